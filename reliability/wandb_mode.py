"""Which W&B mode a run logs in: decided before the run starts, so W&B never stalls or fails it.

Without credentials a run logs offline (no account needed; `wandb sync` uploads it later). With
credentials but no route to the W&B server, wandb.init would wait about 90 s and then fail the run;
it logs offline instead, after one warning. WANDB_MODE=online without credentials is a one-line error.
"""

from __future__ import annotations

import netrc
import os
import socket
import warnings
from urllib.parse import urlparse

from reliability.errors import UserError

DEFAULT_BASE_URL = "https://api.wandb.ai"
CONNECT_TIMEOUT_S = 3.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _server() -> tuple[str, int]:
    url = urlparse(os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL))
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(_server()[0]) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_reachable() -> bool:
    """A TCP connection to the W&B server within a few seconds (assumed reachable behind a proxy)."""
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True
    try:
        with socket.create_connection(_server(), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def choose_wandb_mode() -> None:
    """Sets WANDB_MODE for this process (and the DDP workers it starts) unless it is already decided."""
    mode = os.environ.get("WANDB_MODE")
    if mode not in (None, "online", "run"):
        return  # offline, disabled, dryrun: the user's choice, nothing to check
    if not wandb_has_credentials():
        if mode is not None:
            raise UserError(
                f"WANDB_MODE={mode} but no W&B API key is set: set WANDB_API_KEY or run `wandb login`, or "
                "unset WANDB_MODE to log offline and `wandb sync` later."
            )
        os.environ["WANDB_MODE"] = "offline"
        return
    if not wandb_reachable():
        host, port = _server()
        warnings.warn(
            f"W&B server {host}:{port} is not reachable; logging offline instead (upload later with "
            "`wandb sync runs/RUN/wandb/offline-run-*`).",
            stacklevel=2,
        )
        os.environ["WANDB_MODE"] = "offline"
