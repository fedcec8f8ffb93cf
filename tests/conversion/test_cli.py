"""`python shards.py`: help, one-line errors, and a killed conversion that never looks complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conversion.cli import build_parser, main
from conversion.staging import INCOMPLETE_SUFFIX
from datamodules import StreamingDataModule
from help_text import SHARDS_COMMANDS, SHARDS_DESCRIPTION
from tests.run_helpers import REPOSITORY
from tests.shard_helpers import shards_of, write_jpeg_folder
from tests.test_help import options_without_help

TIMEOUT_S = 120


def shards_py(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPOSITORY / "shards.py"), *arguments],
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip


def test_help_says_what_it_does_and_every_option_has_help(capsys: pytest.CaptureFixture) -> None:
    overview = shards_py("--help")
    assert overview.returncode == 0 and SHARDS_DESCRIPTION in overview.stdout
    assert all(f"  {name}" in overview.stdout for name in SHARDS_COMMANDS)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["convert", "--help"])
    text = capsys.readouterr().out
    assert "--max_side" in text and "--quality" in text
    assert options_without_help(text) == []


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (["--quality", "0"], ValueError, "--quality 0 is invalid"),
        (["--max_side", "-5"], ValueError, "--max_side -5 is invalid"),
        (["--workers", "0"], ValueError, "--workers 0 is invalid"),
    ],
)
def test_bad_settings_are_refused_before_any_work(
    tmp_path: Path, arguments: list[str], error: type[Exception], message: str
) -> None:
    images = write_jpeg_folder(tmp_path / "images", per_class={"train": 2, "val": 1})
    with pytest.raises(error, match=message):
        main(["convert", str(images), str(tmp_path / "out"), *arguments])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images"]


def test_mistakes_end_in_one_line_with_status_1_and_write_nothing(tmp_path: Path) -> None:
    images = write_jpeg_folder(tmp_path / "images", per_class={"train": 2, "val": 1})
    for arguments, message in (
        ([str(images), str(images)], "already exists; shards.py never overwrites"),
        ([str(tmp_path / "missing"), str(tmp_path / "out")], "does not exist"),
    ):
        done = shards_py("convert", *arguments)
        assert done.returncode == 1
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images"]


def test_a_killed_conversion_never_looks_complete_and_the_next_one_finishes(tmp_path: Path) -> None:
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for split, count in (("train", 150), ("val", 2)):
        for name in ("a", "b"):
            (images / split / name).mkdir(parents=True)
            for index in range(count):  # noisy PNGs: each is decoded and re-encoded, a few ms apiece
                pixels = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(images / split / name / f"{index}.png", compress_level=1)
    out = tmp_path / "shards"
    staging = tmp_path / f"shards{INCOMPLETE_SUFFIX}"
    process = subprocess.Popen(
        [sys.executable, str(REPOSITORY / "shards.py"), "convert", str(images), str(out), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT_S
    while not (staging / "train").exists():
        assert process.poll() is None and time.monotonic() < deadline, (
            "the conversion ended before it was killed"
        )
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert not out.exists() and staging.is_dir()
    with pytest.raises(FileNotFoundError, match="no dataset.json"):
        StreamingDataModule(str(staging), batch_size=4)

    with pytest.warns(UserWarning, match="unfinished output of an interrupted conversion"):
        shards_of(images, out, chunk_bytes="64MB")
    assert not staging.exists()
    datamodule = StreamingDataModule(str(out), batch_size=4)
    assert len(datamodule.train_images()) == 300
