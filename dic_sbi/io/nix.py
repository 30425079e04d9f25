"""Writing Neo objects to NIX files."""

from __future__ import annotations

import os
from pathlib import Path

from .atomic import atomic_file

__all__ = ["write_nix_block"]


def write_nix_block(path: str | os.PathLike, block) -> Path:
    """Write the ``neo.Block`` to the NIX file ``path`` atomically (replacing it; nothing partial on error)."""
    from neo.io import NixIO

    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.unlink()  # NixIO refuses to overwrite an existing non-NIX file (the empty placeholder) in mode "ow"
        with NixIO(str(tmp), mode="ow") as io:
            io.write_block(block)
    return path
