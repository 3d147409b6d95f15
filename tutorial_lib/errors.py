"""The errors a user of the course can hit, and what the ``tutorial-lib`` command calls them.

This module imports nothing heavy (no torch), so the command can map an error to its one-line
message and exit code without loading PyTorch for ``--help``, ``book`` or ``notebooks``. The
modules that raise these errors (data, hub, trainer, compare, workers) import them from here.
"""

from __future__ import annotations


class DataError(RuntimeError):
    """Base class of the data layer's errors; the message says what to do."""


class DataNotFoundError(DataError):
    """A raw file is neither in the data root, nor in a mirror, nor downloadable."""


class ChecksumError(DataError):
    """A raw file's md5 differs from the one torchvision publishes."""


class CorruptDataError(DataError):
    """A raw file cannot be decoded (truncated, not gzip, bad IDX header)."""


class DataRootError(DataError):
    """The data root cannot be created or written."""


class PretrainedError(RuntimeError):
    """A pretrained checkpoint could not be loaded; the message names the file and the remedy."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN/inf or exploded; the message says where and what to do."""


class WorkerDied(RuntimeError):
    """A worker process running training runs side by side ended before its run did (killed,
    out of memory); the message says to run one at a time."""


class RunInterrupted(BaseException):
    """Ctrl+C during a comparison or a pretrain (not a KeyboardInterrupt, which Lightning turns
    into exit 1); ``finished`` is the number of runs saved before it."""

    finished: int = 0


class NotebookError(RuntimeError):
    """A notebook that cannot be read, or whose cell failed; the message names both."""


EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130

# (error, what the message starts with, exit code); the first match wins
KNOWN_ERRORS: tuple[tuple[type[BaseException], str, int], ...] = (
    (DataError, "data problem: ", EXIT_FAILED),
    (PretrainedError, "pretrained checkpoints: ", EXIT_FAILED),
    (TrainingDiverged, "", EXIT_DIVERGED),
    (WorkerDied, "", EXIT_FAILED),
    (NotebookError, "", EXIT_FAILED),
    (MemoryError, "out of memory (run one at a time: --workers 1): ", EXIT_FAILED),
    (OSError, "", EXIT_FAILED),
    (ValueError, "", EXIT_FAILED),  # usage errors (exit 2) are argparse's, before anything runs
)
