"""Messages a SimCLR run does not print, each named exactly and each with the reason it is noise here.

A console that shows only what a user must act on: everything else Lightning, torch and W&B print on
every run stays (progress, W&B sync instructions, errors). Each filter matches one message from one
module, so a new warning, or the same text from elsewhere, still shows; tests/test_quiet_console.py
runs a smoke fit and fails on any warning outside its short allow-list.
"""

from __future__ import annotations

import logging
import warnings

# Deprecations of torch internals that Lightning itself calls (its _pytree helper, its all_gather);
# nothing in this project or in a user's config can act on them. Printed once per process (per rank).
LIGHTNING_INTERNAL_DEPRECATIONS = (  # (message, module that triggers it)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"pytorch_lightning\.utilities\._pytree"),
    (r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
     r"lightning_fabric\.utilities\.distributed"),
)
# Lightning cannot see that the data order is resumable: the datamodule, not the DataLoader, carries the
# position (its state_dict; datamodules/sampling.py), and a resumed run skips the batches it trained on.
NOT_RESUMABLE_WARNING = r"You're resuming from a checkpoint that ended before the epoch ended"
# The run folder's own checkpoints on a resume: cli.py refuses any other fit into a folder that holds a
# run, so this warning can only mean the resume it is.
CHECKPOINT_FOLDER_WARNING = r"Checkpoint directory .* exists and is not empty"
# LitData splits the shards over the DataLoader workers itself (datamodules/shard_reading.py), so the
# length of a streamed epoch is exact; Lightning warns about every IterableDataset that has a length.
ITERABLE_LENGTH_WARNING = r"Your `IterableDataset` has `__len__` defined"
# An advertisement for another logging service, printed by Lightning on every run that does not use it.
LOGGER_ADVERT_PREFIX = "💡 Tip: For seamless cloud logging"


class _DropAdvert(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LOGGER_ADVERT_PREFIX)


def silence_known_noise() -> None:
    """Installs the filters in this process; idempotent (warnings and logging drop duplicate filters)."""
    for message, module in LIGHTNING_INTERNAL_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, module=module)
    warnings.filterwarnings("ignore", message=NOT_RESUMABLE_WARNING)
    warnings.filterwarnings("ignore", message=CHECKPOINT_FOLDER_WARNING)
    warnings.filterwarnings("ignore", message=ITERABLE_LENGTH_WARNING, module=r"pytorch_lightning\.utilities")
    # Lightning's rank_zero_info logs through this logger (pytorch_lightning.utilities.rank_zero).
    advert_logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(existing, _DropAdvert) for existing in advert_logger.filters):
        advert_logger.addFilter(_DropAdvert())
