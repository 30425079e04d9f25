"""Safe outputs: dic_sbi never destroys what it did not write.

Every output a user names (a folder such as ``infer --out``, or a file such as ``population --out pop.csv``)
goes through :func:`safe_output`:

- it is checked before any work (:func:`check_output`): never the current folder, the home folder, the root,
  a folder holding a protected path (the recording) or that path itself; an existing non-empty folder only if
  it holds a previous dic_sbi output (a marker file listing what dic_sbi wrote), nothing else, and
  ``overwrite`` is given; an existing file only with ``overwrite``;
- it is reserved for the whole run: a second run writing to the same place is refused at once (an advisory
  lock that the kernel releases if the process dies, so a killed run never blocks the next one);
- the result is built in one hidden staging folder beside it (``.NAME.dic-sbi-staging``) and moved into
  place only when complete. A killed run leaves at most that staging folder, which the next run removes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import InvalidInputError

__all__ = ["MARKER", "OutputError", "check_output", "guard_place", "reserve_output", "safe_output", "staging_path"]

MARKER = ".dic_sbi_output.json"
_LOCK = ".lock"
_CONTENT = "content"
_OLD = "previous"


class OutputError(InvalidInputError):
    """An output place that dic_sbi refuses to write (it would destroy data, or another run is writing it)."""


def staging_path(path: str | os.PathLike) -> Path:
    """The hidden staging folder of an output: ``.NAME.dic-sbi-staging`` beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.dic-sbi-staging"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _contains(outer: Path, inner: Path) -> bool:
    """``inner`` is ``outer`` or lies inside it (both resolved)."""
    return inner == outer or outer in inner.parents


def _written_by_us(folder: Path) -> list[str] | None:
    """The files a previous dic_sbi output in ``folder`` wrote (from its marker), or None without a marker."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    try:
        files = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [str(f) for f in files] if isinstance(files, list) else None


def _tree(folder: Path) -> list[str]:
    """Every file and folder below ``folder``, as relative POSIX paths (folders end with ``/``)."""
    out = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out += [(rel / d).as_posix() + "/" for d in dirs] + [(rel / f).as_posix() for f in files]
    return sorted(out)


def guard_place(
    path: str | os.PathLike, *, kind: str = "folder", protect: Sequence[str | os.PathLike] = (), option: str = "--out"
) -> Path:
    """Refuse an output that is or holds the root, current or home folder or a protected path; return it resolved."""
    raw = Path(path).expanduser()
    if str(path) == "":
        raise OutputError(f"{option}: empty path")
    if raw.is_symlink():
        raise OutputError(f"{option}: {path} is a symbolic link; give the real place to write")
    target = raw.resolve()
    guarded = {"the root folder": Path("/").resolve(), "the current folder": Path.cwd().resolve(),
               "your home folder": Path.home().resolve()}  # fmt: skip
    for what, place in guarded.items():
        if _contains(target, place):
            raise OutputError(f"{option}: {path} {'is' if target == place else 'holds'} {what}, which dic-sbi "
                              "would replace; choose a new name such as "
                              f"{'./results' if kind == 'folder' else './results.csv'}")  # fmt: skip
    for p in protect:
        kept = Path(p).expanduser().resolve()
        if _contains(target, kept):
            raise OutputError(f"{option}: {path} would replace {'' if target == kept else 'the folder holding '}"
                              f"{p}; choose another {'folder' if kind == 'folder' else 'file'}")  # fmt: skip
    return target


def check_output(
    path: str | os.PathLike,
    *,
    kind: str = "folder",
    overwrite: bool = False,
    protect: Sequence[str | os.PathLike] = (),
    option: str = "--out",
    overwrite_option: str = "--overwrite",
) -> Path:
    """Refuse, with an :class:`OutputError` naming ``option``, an output place that writing would damage.

    Parameters
    ----------
    path
        The output folder (``kind="folder"``) or file (``kind="file"``).
    overwrite
        Allow replacing a previous dic_sbi output folder, or an existing file.
    protect
        Paths that must survive (e.g. the recording): the output may be neither one of them nor hold one.
    option, overwrite_option
        How the caller names the output and the overwrite switch in messages (CLI flags or Python parameters).

    Returns
    -------
    The absolute path of the output.
    """
    if kind not in ("folder", "file"):
        raise InvalidInputError(f"kind: expected 'folder' or 'file', got {kind!r}")
    target = guard_place(path, kind=kind, protect=protect, option=option)
    if target.exists():
        if kind == "file":
            if target.is_dir():
                raise OutputError(f"{option}: {path} is a folder; give a file name")
            if not overwrite:
                raise OutputError(f"{option}: {path} already exists; give {overwrite_option} to replace it, or another name")
        else:
            if not target.is_dir():
                raise OutputError(f"{option}: {path} exists and is not a folder")
            present = [f for f in _tree(target) if f != MARKER]
            if present:
                ours = _written_by_us(target)
                if ours is None:
                    raise OutputError(f"{option}: {path} is a folder that holds files dic-sbi did not write "
                                      f"({_listing(present)}); choose a new or empty folder")  # fmt: skip
                foreign = [f for f in present if f not in set(ours)]
                if foreign:
                    raise OutputError(f"{option}: {path} holds a previous dic-sbi output and files dic-sbi did not "
                                      f"write ({_listing(foreign)}); move them away or choose another folder")  # fmt: skip
                if not overwrite:
                    raise OutputError(f"{option}: {path} holds a previous dic-sbi output; give {overwrite_option} "
                                      "to replace it, or choose another folder")  # fmt: skip
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{option}: cannot create {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option}: cannot create {path}: no write permission in {parent}")
    return target


def _listing(names: list[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


# Reservations this process holds (resolved path -> depth), so the API can reserve what the CLI already holds.
_HELD: dict[Path, int] = {}


@contextmanager
def _reserve(target: Path, option: str) -> Iterator[Path]:
    """Hold the staging folder's lock for the duration; refuse at once if another process holds it."""
    if target in _HELD:
        _HELD[target] += 1
        try:
            yield staging_path(target)
        finally:
            _HELD[target] -= 1
        return
    staging = staging_path(target)
    for _ in range(50):
        staging.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(staging / _LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        except FileNotFoundError:  # the previous owner removed the staging folder meanwhile: try again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputError(f"{option}: another dic-sbi run is writing {target} right now; wait for it to "
                                  "finish or choose another place") from None  # fmt: skip
            raise
        try:
            same = os.stat(staging / _LOCK).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # we locked a lock file its owner had just removed: start again
    else:  # pragma: no cover - needs 50 lost races in a row
        raise OutputError(f"{option}: could not reserve {target}")
    _HELD[target] = 1
    try:
        for entry in staging.iterdir():  # left by a run that was killed: ours now, so remove it
            if entry.name != _LOCK:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        yield staging
    finally:
        del _HELD[target]
        try:
            os.unlink(staging / _LOCK)
            os.rmdir(staging)
        except OSError:  # another run already took the staging folder over: it is theirs now
            pass
        os.close(fd)


@contextmanager
def safe_output(
    path: str | os.PathLike,
    *,
    kind: str = "folder",
    overwrite: bool = False,
    protect: Sequence[str | os.PathLike] = (),
    option: str = "--out",
    overwrite_option: str = "--overwrite",
    command: str = "",
) -> Iterator[Path | None]:
    """Check, reserve and atomically write one output (see the module docstring).

    Yields the path to write to (a staging folder for ``kind="folder"``, a staging file for ``"file"``); on
    success it is moved to ``path`` (a folder gets a marker listing its files), on error it is removed and
    ``path`` is untouched. Nested calls for the same path in one process share the reservation.
    """
    with reserve_output(path, kind=kind, overwrite=overwrite, protect=protect, option=option,
                        overwrite_option=overwrite_option) as target:  # fmt: skip
        staging = staging_path(target)
        content = staging / _CONTENT
        if kind == "folder":
            content.mkdir()
        try:
            yield content
            # Check again: the place may have changed while we worked (a user copying files into it, say).
            check_output(path, kind=kind, overwrite=overwrite, protect=protect, option=option,
                         overwrite_option=overwrite_option)  # fmt: skip
            if kind == "folder":
                (content / MARKER).write_text(json.dumps(
                    {"written_by": "dic_sbi", "command": command, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                     "files": [f for f in _tree(content) if f != MARKER]}, indent=1) + "\n")  # fmt: skip
                os.chmod(content, 0o777 & ~_umask())
            elif not content.exists():
                raise OutputError(f"{option}: nothing was written to {path}")
            else:
                os.chmod(content, 0o666 & ~_umask())
            target.parent.mkdir(parents=True, exist_ok=True)
            old = staging / _OLD
            moved = kind == "folder" and target.exists()
            if moved:  # a previous dic_sbi output (checked above): set aside until the new one is in place
                os.replace(target, old)
            try:
                os.replace(content, target)
            except BaseException:
                if moved:
                    os.replace(old, target)
                raise
            if moved:
                shutil.rmtree(old)
        finally:
            if content.is_dir():
                shutil.rmtree(content, ignore_errors=True)
            elif content.exists():
                content.unlink()


@contextmanager
def reserve_output(
    path: str | os.PathLike,
    *,
    kind: str = "folder",
    overwrite: bool = False,
    protect: Sequence[str | os.PathLike] = (),
    option: str = "--out",
    overwrite_option: str = "--overwrite",
) -> Iterator[Path]:
    """Check an output place and hold it for a whole run (the work, then :func:`safe_output` inside).

    A command calls this before its work, so that bad places and concurrent runs are refused before
    anything is computed; :func:`safe_output` for the same path inside shares the reservation.
    """
    target = check_output(path, kind=kind, overwrite=overwrite, protect=protect, option=option,
                          overwrite_option=overwrite_option)  # fmt: skip
    with _reserve(target, option):
        yield target
