"""Run folders: where each run writes, the same folder for every rank, and never one that holds a run.

Every rank of a job parses the command line on its own, so the choices here are made once (by the
launching process, or from what srun/torchrun give every rank) and handed on through the environment.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

import yaml
from pytorch_lightning.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from reliability.checkpoint_files import LIGHTNING_CKPT_ALIASES, read_simclr_checkpoint
from reliability.errors import UserError

RUNS_ROOT = "runs"
CONFIG_FILENAME = "config.yaml"
# The run folder chosen by the launching process; DDP workers started by Lightning inherit it, so
# every rank writes into the same folder even though each parses the command line on its own.
RUN_DIR_ENV = "SIMCLR_RUN_DIR"
# Like the run folder: one W&B run id per job, chosen by the launching process.
WANDB_ID_ENV = "SIMCLR_WANDB_RUN_ID"
LOCK_FILENAME = ".run.lock"
# Open lock files of the run folders this process runs in, by resolved path (see _claim), and the
# folders this process made or claimed: only those may be removed when the run fails (release_run_dir).
_HELD_LOCKS: dict[str, TextIO] = {}
_OWNED_FOLDERS: set[Path] = set()
# config-resumed-*.yaml files this process wrote (see note_resumed_config).
_RESUMED_CONFIGS: list[Path] = []


def _launcher_job_id() -> str | None:
    """An id shared by every rank of a job whose ranks srun or torchrun start separately, else None.

    Such ranks parse the command line on their own and inherit nothing from each other, so the run
    folder must be named after what they share. These checks mirror Lightning's own, so a plain
    `python train.py` (also inside an interactive SLURM allocation) stays rank 0 launching the others.
    """
    if SLURMEnvironment.detect():
        step = os.environ.get("SLURM_STEP_ID")
        job = f"slurm-{os.environ['SLURM_JOB_ID']}"
        # The step keeps two srun steps of one batch script (e.g. two fits) in separate folders.
        return job if step is None else f"{job}.{step}"
    if TorchElasticEnvironment.detect():
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
        if run_id != "none":
            return f"torchrun-{run_id}"
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(
                "torchrun started this process without a run id, so its ranks cannot agree on a run "
                "folder. Pass --rdzv-id=<a name unique to this run> (or --standalone on one machine) to "
                "torchrun, or name the folder with --trainer.default_root_dir."
            )
    return None


def _fresh_folder(parent: Path, name: str) -> Path:
    """A new folder, made here: two runs started within the same second never share one."""
    folder, suffix = parent / name, 1
    while True:
        try:
            folder.mkdir(parents=True)
            _OWNED_FOLDERS.add(folder)
            return folder
        except FileExistsError:
            suffix += 1
            folder = parent / f"{name}-{suffix}"


def _claim(run_dir: Path) -> None:
    """One process at a time per run folder: a second fit or resume started there stops at once.

    Two processes in one folder would overwrite each other's last.ckpt and config.yaml. The lock is a
    POSIX record lock (fcntl) on a file in the folder: it belongs to this process alone, so the kernel
    releases it when this process ends, even by SIGKILL, and the DataLoader workers forked from it never
    hold it. (An flock(2) lock belongs to the open file, which forked workers share: after a SIGKILL of
    the main process they kept the folder locked until their watchdog stopped them, about 5 s, and an
    immediate restart was refused.) Closing any descriptor of the lock file in this process would
    release the lock; only this function and release_run_dir open or close it.
    """
    if os.name != "posix" or str(run_dir.resolve()) in _HELD_LOCKS:
        return
    import fcntl

    made_here = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = (run_dir / LOCK_FILENAME).open("a")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.close()
        if error.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        raise UserError(
            f"Another process is running in '{run_dir}' (it holds {LOCK_FILENAME}); wait for it to end, "
            "or start this run in another --trainer.default_root_dir."
        ) from None
    _HELD_LOCKS[str(run_dir.resolve())] = handle
    if made_here:
        _OWNED_FOLDERS.add(run_dir)


def note_resumed_config(path: Path) -> None:
    """The config file of this resume; removed by release_run_dir if the resume fails before it saves
    a checkpoint, as it then records nothing that happened."""
    _RESUMED_CONFIGS.append(path)


def release_run_dir(failed: bool = False) -> None:
    """Ends this process's claim on its run folder and removes what an invocation leaves to no use: a
    folder it made that holds nothing (a run stopped by a missing dataset, a `--trainer.fast_dev_run`,
    a validate without a logger), and the config-resumed-*.yaml of a resume that failed before saving
    a checkpoint."""
    for handle in _HELD_LOCKS.values():
        handle.close()
    _HELD_LOCKS.clear()
    owned, resumed = list(_OWNED_FOLDERS), list(_RESUMED_CONFIGS)
    _OWNED_FOLDERS.clear()
    _RESUMED_CONFIGS.clear()
    for folder in owned:
        if folder.is_dir() and {path.name for path in folder.iterdir()} <= {LOCK_FILENAME}:
            (folder / LOCK_FILENAME).unlink(missing_ok=True)
            folder.rmdir()
    if not failed:
        return
    for config in resumed:
        if config.is_file():
            written = config.stat().st_mtime
            if not any(ckpt.stat().st_mtime >= written for ckpt in config.parent.rglob("*.ckpt")):
                config.unlink()


def resolve_last_checkpoint(run_dir: str | None, checkpoint_dir: str | None) -> Path:
    """The checkpoint `--ckpt_path last` resumes from (the newest last*.ckpt, as Lightning picks it).

    It must exist: Lightning would otherwise start over and only warn.
    """
    if run_dir is None:
        raise UserError(
            "--ckpt_path last needs the run to resume: pass its configuration, "
            "e.g. python train.py fit --config runs/RUN/config.yaml --ckpt_path last."
        )
    folder = Path(checkpoint_dir) if checkpoint_dir else Path(run_dir) / "checkpoints"
    candidates = list(folder.glob("last*.ckpt"))
    if not candidates:
        raise UserError(
            f"--ckpt_path last: no last.ckpt in '{folder}', so there is nothing to resume. Check the run "
            "folder, or run the same command without --ckpt_path last to start the run afresh there."
        )
    newest = max(candidates, key=lambda path: path.stat().st_mtime)
    read_simclr_checkpoint(newest, "--ckpt_path last")
    return newest


def requeued_run_dir(given: str | None) -> Path | None:
    """The folder of this SLURM job's earlier incarnation, when SLURM requeued the job (after pre-emption).

    The requeued job runs the same command; it must continue its run rather than start a new folder.
    """
    if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) < 1:
        return None
    job_id = _launcher_job_id()
    if given is None and job_id is None:
        return None
    folder = Path(given) if given else Path(RUNS_ROOT) / str(job_id)
    return folder if (folder / CONFIG_FILENAME).exists() else None


def newest_checkpoint(run_dir: Path, checkpoint_dir: str | None) -> str | None:
    """Lightning's SLURM checkpoint (hpc_ckpt_N.ckpt, saved on the requeue signal) or last.ckpt, the newer."""
    folder = Path(checkpoint_dir) if checkpoint_dir else run_dir / "checkpoints"
    candidates = [*run_dir.glob("hpc_ckpt_*.ckpt"), *folder.glob("last*.ckpt")]
    return str(max(candidates, key=lambda path: path.stat().st_mtime)) if candidates else None


def saved_wandb_id(run_dir: Path) -> str | None:
    """The W&B run id in a run's config.yaml (a requeued job is launched with the original config)."""
    saved = yaml.safe_load((run_dir / CONFIG_FILENAME).read_text()) or {}
    logger = (saved.get("trainer") or {}).get("logger")
    return logger.get("init_args", {}).get("id") if isinstance(logger, dict) else None


def resolve_wandb_run_id(resuming: bool, configured: str | None) -> str:
    """The same W&B run for a resumed run (its id is in the saved config.yaml), a new one otherwise.

    A new id even when an old config.yaml is passed to repeat a run, so the repeat never appends to
    the run it copies.
    """
    inherited = os.environ.get(WANDB_ID_ENV)
    if inherited:
        return inherited
    # Starts with a letter: an id such as 1e234567 would be read back from config.yaml as a number.
    run_id = configured if resuming and configured else "r" + secrets.token_hex(4)
    os.environ[WANDB_ID_ENV] = run_id
    return run_id


def _set_aside_config(run_dir: Path) -> None:
    """A run that saved no checkpoint (killed early, or stopped by bad data) has nothing to resume or
    lose: a new run may start in its folder. Its config.yaml is kept under another name."""
    kept = run_dir / f"config-unfinished-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
    try:
        os.replace(run_dir / CONFIG_FILENAME, kept)
    except FileNotFoundError:  # another rank of this job set it aside first
        return
    warnings.warn(
        f"'{run_dir}' holds a run that saved no checkpoint; starting a new run there (the earlier "
        f"{CONFIG_FILENAME} is kept as {kept.name}).",
        stacklevel=2,
    )


def resolve_run_dir(subcommand: str, given: str | None, resuming: bool, dry_run: bool = False) -> Path:
    """The folder this run writes into, the same one for every rank of a job.

    fit: `given` (a run folder) or a fresh runs/<timestamp> (runs/<job id> under srun or torchrun);
    a folder that already holds a run is only reused to resume it. validate/test: a fresh sub-folder
    of `given` (typically the run being evaluated, when its saved config.yaml is passed back) or of
    runs/, so evaluations never overwrite the run they evaluate. A `dry_run` (fast_dev_run) writes
    nothing, so it may run in any folder, and leaves a run it finds there as it was.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        return Path(inherited)
    if given is not None and Path(given).exists() and not Path(given).is_dir():
        raise NotADirectoryError(
            f"--trainer.default_root_dir '{given}' is a file; name a folder (new or a run folder)."
        )
    if subcommand == "fit" and given is not None:
        run_dir = Path(given)
    else:
        job_id = _launcher_job_id()
        stamp = job_id or time.strftime("%Y%m%d-%H%M%S")
        if subcommand == "fit":
            parent, name = Path(RUNS_ROOT), stamp
        else:
            parent, name = Path(given or RUNS_ROOT), f"{subcommand}-{stamp}"
        # Every rank of a launcher's job must name the same folder, which another rank may already have
        # created: no suffix. Rank 0 writes config.yaml only once all ranks have joined the process
        # group, so the check below still sees a previous run's, never this one's.
        run_dir = parent / name if job_id else _fresh_folder(parent, name)
    # Ranks that srun or torchrun start separately all name this folder: none may lock the others out.
    if subcommand == "fit" and not (SLURMEnvironment.detect() or TorchElasticEnvironment.detect()):
        _claim(run_dir)
    if subcommand == "fit" and (run_dir / CONFIG_FILENAME).exists() and not resuming and not dry_run:
        if any(run_dir.rglob("*.ckpt")):
            raise FileExistsError(
                f"'{run_dir}' already holds a run ({CONFIG_FILENAME} and checkpoints are there). To continue "
                f"it pass --config {run_dir / CONFIG_FILENAME} --ckpt_path last; to start a new one choose "
                "another --trainer.default_root_dir."
            )
        _set_aside_config(run_dir)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def _is_under(path: str | None, folder: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(folder.resolve())


def _rebased(path: str, old: Path, new: Path) -> str:
    return str(new / Path(path).resolve().relative_to(old.resolve()))


def rebase_copied_run(config: Any) -> None:
    """A run folder that was copied or moved resumes in the folder it now lies in.

    train.py records absolute (or cwd-relative) paths in config.yaml: the run folder, the checkpoint
    folders and, once resumed, the checkpoint. Read back from a copy they would name the original, so
    `fit --config COPY/config.yaml --ckpt_path last` would resume from, and overwrite, the original's
    last.ckpt. Every path inside the recorded folder is moved to the folder the config file lies in
    (or to a new --trainer.default_root_dir, when a run is repeated elsewhere from its config).
    """
    for given in reversed(config.get("config") or []):
        file = Path(str(given))
        recorded = _recorded_run_dir(file)
        if recorded is None:
            continue
        trainer = config.trainer
        if trainer.default_root_dir is None or Path(trainer.default_root_dir) == recorded:
            trainer.default_root_dir = str(file.parent)
        target = Path(trainer.default_root_dir)
        for section in (config.checkpoint, config.step_checkpoint):
            if _is_under(section.dirpath, recorded):
                section.dirpath = _rebased(section.dirpath, recorded, target)
        ckpt_path = config.get("ckpt_path")
        if ckpt_path not in (None, "last", "best", "hpc", "registry") and _is_under(ckpt_path, recorded):
            config.ckpt_path = _rebased(ckpt_path, recorded, file.parent)
        return


def _recorded_run_dir(file: Path) -> Path | None:
    """The run folder a config file written by train.py records (its checkpoints lie in <it>/checkpoints).

    None for any other config file, e.g. configs/*.yaml or a hand-written one naming an output folder.
    """
    try:
        saved = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(saved, dict):
        return None
    root = (saved.get("trainer") or {}).get("default_root_dir")
    dirpath = (saved.get("checkpoint") or {}).get("dirpath")
    if not root or not dirpath or Path(dirpath) != Path(root) / "checkpoints":
        return None
    return Path(root)


def prepare_checkpoint_paths(config: Any) -> None:
    """A subcommand's parsed config: paths of a copied run folder moved to the copy, and a named
    `--ckpt_path FILE` checked to be a SimCLR checkpoint before anything is built or written."""
    rebase_copied_run(config)
    ckpt_path = config.get("ckpt_path")
    if ckpt_path is None or ckpt_path in LIGHTNING_CKPT_ALIASES or ckpt_path.startswith("registry"):
        return
    read_simclr_checkpoint(ckpt_path, "--ckpt_path")
