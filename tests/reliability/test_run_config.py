"""Every invocation's config lies in the run folder, beside config.yaml, whatever logger the run uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import cli_main
from tests.run_helpers import fresh_cli_environment, smoke_args, write_image_folder


def test_with_csv_logger_the_configs_and_the_logs_are_in_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_cli_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    images, run = write_image_folder(tmp_path / "images"), tmp_path / "run"
    quick = ["--trainer.logger", "CSVLogger", "--trainer.limit_val_batches", "0", "--test_after_fit", "false"]
    cli_main(smoke_args(images, run, *quick, "--trainer.max_epochs", "1"))
    cli_main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_epochs=2"])

    configs = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("config*.yaml"))
    assert len(configs) == 2 and configs[0].startswith("run/config-resumed-")
    assert configs[1] == "run/config.yaml"
    # The CSV logs of both invocations went into the run folder, not into the working directory.
    logs = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("metrics.csv"))
    assert logs == ["run/version_0/metrics.csv", "run/version_1/metrics.csv"]
