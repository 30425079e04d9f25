"""Progress bars (tqdm) that read well in a terminal and in a log file.

In a terminal a finished bar may vanish (``leave=False``); written to a file or a pipe (a log, a CI job) every
bar is left in place, so it ends its line with a newline instead of blanking it with spaces and a carriage
return, which would glue the next message to it.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(**kwargs: Any) -> Any:
    """A ``tqdm.auto.tqdm`` bar (keyword arguments as tqdm's); ``leave=False`` holds only on a terminal."""
    from tqdm.auto import tqdm

    stream = kwargs.get("file") or sys.stderr
    if not kwargs.get("leave", True):
        isatty = getattr(stream, "isatty", None)
        kwargs["leave"] = not (callable(isatty) and isatty())
    return tqdm(**kwargs)
