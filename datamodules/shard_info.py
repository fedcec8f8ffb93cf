"""`dataset.json`: what `shards.py convert` records beside the shards and StreamingDataModule reads first.

The shards themselves are LitData's format (each split a folder of `chunk-*.bin` and `index.json`); this
file adds what a datamodule needs before it reads any image: the class names, every label of every
split (held-out slices and class-balanced validation orders need them, and reading them from the shards
would mean downloading every chunk), the first two distinct image sizes (the native size), and the mean
and std of a seeded sample of training images. It is written last, so a dataset without it is an
unfinished conversion or upload and is refused.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reliability.errors import UserError
from views.config import Triple

INFO_FILENAME = "dataset.json"
FORMAT_NAME = "simclr-lightning-shards"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
CONVERT_HINT = "make one with `python shards.py convert IMAGE_FOLDER OUT` (README, Data at scale)"


@dataclass(frozen=True)
class ImageSize:
    """One (width, height) met in a split, with a file of that size (its path inside the split)."""

    width: int
    height: int
    example: str


@dataclass(frozen=True)
class SplitInfo:
    labels: np.ndarray  # [N] int64, in shard order
    sizes: list[ImageSize]  # the first two distinct sizes in shard order; one when all share it

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ShardInfo:
    class_names: list[str]
    splits: dict[str, SplitInfo]
    mean: Triple  # of the training images' pixels in [0, 1], RGB
    std: Triple
    conversion: dict[str, Any] = field(default_factory=dict)  # how the shards were made (source, settings)

    def to_json(self) -> str:
        splits = {
            name: {
                "images": len(split),
                "labels": split.labels.tolist(),
                "sizes": [[size.width, size.height, size.example] for size in split.sizes],
            }
            for name, split in self.splits.items()
        }
        document = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "class_names": self.class_names,
            "mean": list(self.mean),
            "std": list(self.std),
            "conversion": self.conversion,
            "splits": splits,
        }
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, where: str) -> ShardInfo:
        try:
            document = json.loads(text)
            if document.get("format") != FORMAT_NAME:
                raise ValueError(f"'format' is {document.get('format')!r}, not {FORMAT_NAME!r}")
            if int(document["version"]) > FORMAT_VERSION:
                raise ValueError(
                    f"it is version {document['version']}, newer than this code reads ({FORMAT_VERSION}); "
                    "update the template"
                )
            splits = {
                name: SplitInfo(
                    np.asarray(split["labels"], dtype=np.int64),
                    [ImageSize(int(w), int(h), str(example)) for w, h, example in split["sizes"]],
                )
                for name, split in document["splits"].items()
            }
            return cls(
                [str(name) for name in document["class_names"]],
                splits,
                _triple(document["mean"]),
                _triple(document["std"]),
                dict(document.get("conversion", {})),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"'{where}' is not a shards.py dataset description ({type(error).__name__}: {error}); "
                f"{CONVERT_HINT}."
            ) from error


def _triple(values: list[float]) -> Triple:
    if len(values) != 3:
        raise ValueError(f"expected 3 values (R, G, B), got {values}")
    return (float(values[0]), float(values[1]), float(values[2]))


def is_remote(root: str) -> bool:
    """An object-store URL (s3://, gs://, ...) rather than a local folder."""
    return "://" in root and not root.startswith("file://")


def split_location(root: str, split: str) -> str:
    """The folder or URL of one split's shards (LitData's input_dir)."""
    return f"{root.rstrip('/')}/{split}" if is_remote(root) else str(Path(root) / split)


def read_shard_info(root: str, storage_options: dict[str, Any] | None = None) -> ShardInfo:
    """The dataset.json of a local shard folder, or of an object-store URL fetched with LitData's client."""
    if is_remote(root):
        _refuse_plain_http(root, storage_options or {})
        url = f"{root.rstrip('/')}/{INFO_FILENAME}"
        return ShardInfo.from_json(_download(url, root, storage_options), url)
    folder = Path(root)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"Shard dataset '{root}' {what}; {CONVERT_HINT}.")
    path = folder / INFO_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"'{root}' has no {INFO_FILENAME}, so it is not a finished shard dataset (shards.py convert "
            f"writes it last; an interrupted conversion leaves '{root}.incomplete', never '{root}'); "
            f"{CONVERT_HINT}."
        )
    return ShardInfo.from_json(path.read_text(), str(path))


def _download(url: str, root: str, storage_options: dict[str, Any] | None) -> str:
    """One small file through the client LitData streams the chunks with (same credentials, endpoint).

    Into memory through the store's SDK client (boto3 for S3), as LitData reads its index.json in the
    main process: its faster client for chunks (obstore) must first start inside the DataLoader
    workers, since its runtime does not survive a fork.
    """
    from litdata.streaming.downloader import get_downloader

    buffer = io.BytesIO()
    try:
        with tempfile.TemporaryDirectory(prefix="simclr-shard-info-") as folder:
            get_downloader(root, folder, [], storage_options or {}).download_fileobj(url, buffer)
    except Exception as error:  # the clients raise their own types (botocore, gcsfs, azure, ...)
        missing = "404" in str(error) or "NoSuchKey" in str(error) or "Not Found" in str(error)
        reason = "it does not exist" if missing else f"{type(error).__name__}: {' '.join(str(error).split())}"
        raise FileNotFoundError(
            f"Cannot read '{url}' ({reason}). Check the URL, the credentials (e.g. AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY) and --data.storage_options (e.g. {endpoint_url: https://HOST:PORT}); "
            f"upload dataset.json last, after the shards, so that a partial upload is never taken for a "
            f"dataset; {CONVERT_HINT}."
        ) from error
    return buffer.getvalue().decode()


def _refuse_plain_http(root: str, storage_options: dict[str, Any]) -> None:
    """LitData 0.2.76 fetches S3 chunks with obstore, which refuses plain-http endpoints ("BadScheme")
    deep inside the DataLoader workers; say so before the run starts."""
    endpoint = (
        storage_options.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if root.startswith("s3://") and str(endpoint or "").startswith("http://"):
        raise UserError(
            f"The S3 endpoint '{endpoint}' is plain http, which LitData's chunk client (obstore) refuses; "
            "serve the store over https (MinIO and SeaweedFS can) and give https://... as endpoint_url "
            "(--data.storage_options or AWS_ENDPOINT_URL)."
        )
