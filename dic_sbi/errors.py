"""The one exception family of dic_sbi.

Every error raised on purpose by the package derives from :class:`DicSbiError`, so a caller can catch all of
them at once; the subclasses also derive from the matching builtin (``ValueError``, ``KeyError``) so code that
expects the builtin keeps working.
"""

from __future__ import annotations

__all__ = ["DicSbiError", "InvalidInputError", "UnknownModelError", "UnreachableTargetError", "RecordingError",
           "CancelledError"]


class DicSbiError(Exception):
    """Base class of every error raised by dic_sbi."""


class InvalidInputError(DicSbiError, ValueError):
    """An argument has the wrong shape, type or value; the message names the argument."""


class UnknownModelError(DicSbiError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnreachableTargetError(DicSbiError, ValueError):
    """A DIC target cannot be reached with non-negative conductances within the sampling budget."""


class RecordingError(DicSbiError, ValueError):
    """A recording cannot be read or holds no usable spikes; the message names the file and what was wrong."""


class CancelledError(DicSbiError):
    """Long work (a simulation, an inference) stopped because its ``cancel`` event was set; nothing was returned
    or written."""
