"""W&B never stalls or fails a run: no key with WANDB_MODE=online is one line; no network means offline."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from reliability.errors import UserError
from reliability.wandb_mode import choose_wandb_mode


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "missing-netrc"))
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)


def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once, as with no route to W&B."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_online_without_an_api_key_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.raises(UserError, match="WANDB_MODE=online but no W&B API key is set: set WANDB_API_KEY"):
        choose_wandb_mode()


@pytest.mark.parametrize("mode", [None, "online"])
def test_a_key_without_a_route_to_the_server_logs_offline_after_one_warning(
    monkeypatch: pytest.MonkeyPatch, mode: str | None
) -> None:
    if mode:
        monkeypatch.setenv("WANDB_MODE", mode)
    monkeypatch.setenv("WANDB_API_KEY", "f" * 40)  # a fake key
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    with pytest.warns(UserWarning, match="is not reachable; logging offline instead") as warned:
        choose_wandb_mode()
    assert os.environ["WANDB_MODE"] == "offline" and len(warned) == 1
    assert time.monotonic() - started < 10


def test_a_reachable_server_keeps_online(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("WANDB_API_KEY", "f" * 40)
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        choose_wandb_mode()
    assert "WANDB_MODE" not in os.environ
