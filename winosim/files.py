"""Atomic output files: a file appears complete or not at all.

Every file winosim writes (command outputs, traces, figures, sweep points and tables) goes through
`atomic_write`: the content is written to a temporary file in the target's folder, made an ordinary
readable file (0644; `mkstemp` creates 0600) and renamed over the target, so an interrupted or failing
writer never leaves a partial file behind and a reader never sees one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from winosim.errors import OutputError


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None], *, create_folder: bool = True) -> Path:
    """Call `write(tmp)` to fill a temporary file next to `path`, then rename it over `path`; returns `path`.

    With `create_folder` the target's missing folders are created; without it a missing folder raises
    `OutputError`, as do a directory in the way and a file system error (the temporary file is removed).
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    folder = target.parent
    if not create_folder and not folder.is_dir():
        raise OutputError(f"cannot write {target}: folder {folder} does not exist")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, *, create_folder: bool = True) -> Path:
    """Write `text` (UTF-8, '\\n' line ends) to `path` atomically."""
    return atomic_write(path, lambda tmp: _write_text(tmp, text), create_folder=create_folder)


def _write_text(tmp: Path, text: str) -> None:
    with tmp.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
