"""User mistakes end in one line that names the culprit and the fix, not in a traceback.

Only errors raised on purpose by the template's checks (and Lightning's configuration errors) are
shortened; anything else is a bug and keeps its traceback. SIMCLR_DEBUG=1 keeps every traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from lightning_fabric.utilities.exceptions import MisconfigurationException

DEBUG_ENV = "SIMCLR_DEBUG"
EXIT_STATUS = 1
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    MisconfigurationException,
)


class UserError(RuntimeError):
    """A mistake in the command line, the data or the run folder that the user can fix."""


def one_line(error: BaseException) -> str:
    """The error's own message on one line; for errors re-raised from a DataLoader worker, the original one.

    PyTorch re-raises a worker's exception with the worker's traceback folded into the message; its
    last line is the original `module.Type: message`.
    """
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        prefix, _, message = text.partition(": ")
        text = message if message and " " not in prefix else text
    return " ".join(text.split())


def _is_user_error(error: BaseException) -> bool:
    if isinstance(error, (UserError, *USER_ERRORS)):
        return True
    # Errors from our checks raised inside DataLoader workers come back as their type, but a type
    # PyTorch cannot rebuild becomes a RuntimeError that still names it.
    return isinstance(error, RuntimeError) and "Original Traceback" in str(error) and any(
        f"{t.__name__}:" in str(error) for t in (UserError, *USER_ERRORS)
    )


@contextmanager
def reported_as_one_line() -> Iterator[None]:
    """Prints `error: <message>` to stderr and exits with status 1 for user errors; re-raises the rest."""
    try:
        yield
    except Exception as error:
        if os.environ.get(DEBUG_ENV) == "1" or not _is_user_error(error):
            raise
        print(f"error: {one_line(error)}  (set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        raise SystemExit(EXIT_STATUS) from None
