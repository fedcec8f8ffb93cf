"""User mistakes end in one line that names the culprit and the fix, not in a traceback.

Only errors raised on purpose by the template's checks (and Lightning's configuration errors) are
shortened; anything else is a bug and keeps its traceback. SIMCLR_DEBUG=1 keeps every traceback.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from argparse import ArgumentError
from collections.abc import Iterator
from contextlib import contextmanager

from lightning_fabric.utilities.exceptions import MisconfigurationException

DEBUG_ENV = "SIMCLR_DEBUG"
EXIT_STATUS = 1
USER_ERRORS: tuple[type[BaseException], ...] = (
    ArgumentError,  # the command line or a config file (jsonargparse with exit_on_error=False)
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    MisconfigurationException,
)


# Writing failed for a reason of the machine, not of the code: the user frees space or picks a folder.
STORAGE_ERRNOS = (errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT)


class UserError(RuntimeError):
    """A mistake in the command line, the data or the run folder that the user can fix."""


def one_line(error: BaseException) -> str:
    """The error's own message on one line; for errors re-raised from a DataLoader worker, the original one.

    PyTorch re-raises a worker's exception with the worker's traceback folded into the message; its
    last line is the original `module.Type: message`.
    """
    if isinstance(error, OSError) and _is_storage_error(error):
        where = f"'{error.filename}'" if error.filename else "a file of the run"
        return (
            f"Cannot write {where}: {error.strerror}. Free space or choose a writable folder "
            "(--trainer.default_root_dir for train.py, --output_dir for evaluate.py); files already "
            "written, such as the last complete checkpoint, are kept."
        )
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        prefix, _, message = text.partition(": ")
        text = message if message and " " not in prefix else text
    return " ".join(_condensed_union_error(text).split())


def parser_kwargs_raising_errors(subcommands: tuple[str, ...]) -> dict[str, object]:
    """LightningCLI parser_kwargs under which a parsing error raises (then printed as one line, exit 1)
    instead of printing ~100 lines of usage and exiting with status 2."""
    return {"exit_on_error": False, **{name: {"exit_on_error": False} for name in subcommands}}


def _condensed_union_error(text: str) -> str:
    """jsonargparse's "Does not validate against any of the Union subtypes" report, down to its reason.

    The report lists every type the value was tried as (including None) and the whole parsed value;
    the sentence that matters (e.g. "batch_size=0 is too small ...") is one of its items.
    """
    if "Does not validate against any of the Union subtypes" not in text:
        return text
    key_match = re.search(r'Parser key "([^"]+)"', text)
    key = f"--{key_match.group(1)}: " if key_match else ""
    given_match = re.search(r"^\s*Given value: (.*)$", text, flags=re.MULTILINE)
    given = given_match.group(1) if given_match else "?"
    indent_match = re.search(r"Errors:\n( *)- ", text)
    indent = indent_match.group(1) if indent_match else "    "
    reasons = [
        item for item in re.findall(rf"^{indent}- (.*)$", text, flags=re.MULTILINE)
        if item != "Expected a <class 'NoneType'>"
    ]
    expected = [re.fullmatch(r"Expected a <class '([^']+)'>", item) for item in reasons]
    if reasons and all(expected):
        return f"{key}expected {' or '.join(m.group(1) for m in expected if m)}, got {given!r}."
    subclass = next((re.fullmatch(r"Not a valid subclass of (\w+)", item) for item in reasons), None)
    if subclass and "class_path" not in given:
        name = key_match.group(1) if key_match else "data"
        return (
            f"No {subclass.group(1)} is chosen for '{name}'; pass --{name} <ClassName> or a config file that "
            f"sets it, e.g. --config configs/cifar10.yaml."
        )
    return key + (reasons[0] if reasons else text)


def _is_storage_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS


def _is_user_error(error: BaseException) -> bool:
    if isinstance(error, (UserError, *USER_ERRORS)) or _is_storage_error(error):
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
