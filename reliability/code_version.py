"""The git commit a run was started from, so every logged result can be traced to its code."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def code_version() -> dict[str, str | bool]:
    """{"git_commit": sha, "git_dirty": bool}; empty outside a git checkout (e.g. an installed copy)."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {}
    # Uncommitted edits mean the commit alone does not reproduce the run; say so next to it.
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status)}
