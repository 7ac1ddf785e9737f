"""fastmotion's error types, one per kind of failure. Each is a ValueError or RuntimeError as well, so callers
that catch the builtin kinds keep working; the CLI turns every `FastmotionError` into a one-line message."""
from __future__ import annotations


class FastmotionError(Exception):
    """Base of the errors below."""


class CheckpointError(FastmotionError, ValueError):
    """A checkpoint file is missing, unreadable, not fastmotion's, or holds another model than expected."""


class DatasetError(FastmotionError, ValueError):
    """A dataset folder is missing files, holds malformed ones, or has nothing usable in a split."""


class TrainingError(FastmotionError, RuntimeError):
    """A training run cannot start (its output folder) or cannot go on (a non-finite or blown-up loss)."""


class MotionError(FastmotionError, ValueError):
    """A generated or lifted motion cannot be written: it holds NaN or inf (the model diverged)."""
