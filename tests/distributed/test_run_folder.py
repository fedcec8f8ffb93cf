"""Under srun and torchrun every rank picks its run folder on its own: they must all pick the same one."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.run_folder import CONFIG_FILENAME, RUN_DIR_ENV, resolve_run_dir

LAUNCHER_VARIABLES = [
    "SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_JOB_NAME",
    "TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "GROUP_RANK", "ROLE_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE",
]


@pytest.fixture(autouse=True)
def bare_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # setenv first, so that monkeypatch also removes what resolve_run_dir exports.
    for name in [RUN_DIR_ENV, *LAUNCHER_VARIABLES]:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def as_another_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank started by the launcher, not by rank 0: it inherits nothing rank 0 exported."""
    monkeypatch.delenv(RUN_DIR_ENV)


def srun_task(monkeypatch: pytest.MonkeyPatch, job_name: str = "simclr") -> None:
    srun_variables = dict(SLURM_NTASKS="2", SLURM_JOB_ID="4242", SLURM_STEP_ID="0", SLURM_JOB_NAME=job_name)
    for name, value in srun_variables.items():
        monkeypatch.setenv(name, value)


def torchrun_worker(monkeypatch: pytest.MonkeyPatch, run_id: str) -> None:
    for name, value in dict(
        TORCHELASTIC_RUN_ID=run_id, RANK="1", LOCAL_RANK="1", GROUP_RANK="0", ROLE_RANK="1",
        LOCAL_WORLD_SIZE="2", WORLD_SIZE="2",
    ).items():
        monkeypatch.setenv(name, value)


def test_srun_tasks_share_the_job_folder_even_after_one_created_it(monkeypatch: pytest.MonkeyPatch) -> None:
    srun_task(monkeypatch)
    first = resolve_run_dir("fit", None, resuming=False)
    assert first == Path("runs") / "slurm-4242.0"
    first.mkdir(parents=True)  # rank 0 creates it for W&B before the other ranks parse their arguments
    as_another_rank(monkeypatch)
    assert resolve_run_dir("fit", None, resuming=False) == first


def test_srun_job_folder_holding_a_run_is_only_reused_to_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    srun_task(monkeypatch)
    folder = Path("runs") / "slurm-4242.0"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / CONFIG_FILENAME).write_text("trainer: {}\n")
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")  # a folder without one takes a new run
    with pytest.raises(FileExistsError, match="--ckpt_path"):
        resolve_run_dir("fit", None, resuming=False)
    assert resolve_run_dir("fit", None, resuming=True) == folder


def test_srun_validation_goes_into_one_subfolder_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    srun_task(monkeypatch)
    first = resolve_run_dir("validate", "runs/old", resuming=True)
    assert first == Path("runs") / "old" / "validate-slurm-4242.0"
    first.mkdir(parents=True)
    as_another_rank(monkeypatch)
    assert resolve_run_dir("validate", "runs/old", resuming=True) == first


def test_plain_python_in_an_interactive_allocation_gets_fresh_timestamped_folders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Lightning launches the other ranks itself here; they inherit the folder through the environment.
    srun_task(monkeypatch, job_name="interactive")
    first = resolve_run_dir("fit", None, resuming=False)
    assert not first.name.startswith("slurm") and first.parent == Path("runs")
    assert first.is_dir()  # made at once, so a second run started in the same second gets another
    as_another_rank(monkeypatch)
    assert resolve_run_dir("fit", None, resuming=False) != first


def test_torchrun_workers_share_the_run_id_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    torchrun_worker(monkeypatch, run_id="exp7")
    first = resolve_run_dir("fit", None, resuming=False)
    assert first == Path("runs") / "torchrun-exp7"
    first.mkdir(parents=True)
    as_another_rank(monkeypatch)
    assert resolve_run_dir("fit", None, resuming=False) == first


def test_torchrun_without_a_run_id_asks_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    torchrun_worker(monkeypatch, run_id="none")
    with pytest.raises(ValueError, match="--rdzv-id"):
        resolve_run_dir("fit", None, resuming=False)
    assert resolve_run_dir("fit", "runs/named", resuming=False) == Path("runs") / "named"
