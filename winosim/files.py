"""Atomic output files and folders: an output appears complete or not at all.

Every file winosim writes (command outputs, traces, figures, sweep points and tables) goes through
`atomic_write`: the content is written to a temporary file in the target's folder, made an ordinary
readable file (0644; `mkstemp` creates 0600), flushed to disk (`fsync`) and renamed over the target, and the
folder's entry is flushed too, so an interrupted or failing writer, or a crash of the machine, never leaves a
partial file behind and a reader never sees one.

A set of files that belongs together (`run --out DIR`: tables and figures) is built with
`atomic_directory`: in a temporary folder next to the target, moved into place only when every file of the
set has been written; when any step fails, nothing of the set appears.

`check_output_file` / `check_output_folder` refuse an output path before the work; `check_not_an_input` an
output that is a file the command reads (writing it would destroy its input), `check_file_apart_from_folder` an
output file that a set of files written with it would replace; `check_distinct_inputs` an input file or folder
named twice. All compare paths as resolved, so another spelling of a path (`./x`, a symbolic link) is the same.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from winosim.errors import ConfigError, OutputError


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[Path], None],
    *,
    create_folder: bool = True,
    durable: bool = True,
) -> Path:
    """Call `write(tmp)` to fill a temporary file next to `path`, fsync it, then rename it over `path`;
    returns `path`.

    With `create_folder` the target's missing folders are created; without it a missing folder raises
    `OutputError`, as do a directory in the way and a file system error (the temporary file is removed).
    `durable=False` skips the two fsyncs (file and folder): readers still never see a partial file, but
    after a power loss the file may be empty or missing; only for files whose reader verifies them (a
    sweep's point files carry a checksum and are recomputed when they do not match).
    """
    target = Path(path)
    check_output_file(target, create_folder=create_folder)
    folder = target.parent
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
        if durable:
            _fsync(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    if durable:
        _fsync_folder(folder)
    return target


def check_output_file(path: str | os.PathLike[str], *, create_folder: bool = True) -> None:
    """OutputError now for a file `atomic_write` could not write later: a directory in its place, a file
    where a folder above it must be, a folder without write permission, or (without `create_folder`) a
    missing folder. Commands call it before their work, so a bad output path costs a second, not the work."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    _check_folders(target, target.parent)
    if not create_folder and not target.parent.is_dir():
        raise OutputError(f"cannot write {target}: folder {target.parent} does not exist")


def check_output_folder(path: str | os.PathLike[str]) -> None:
    """OutputError now for a folder `atomic_directory` could not fill later (a file in its place or above
    it, no write permission); a missing folder is fine, it is created."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot write {target}: it exists and is not a directory")
    _check_folders(target, target)


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file or folder: the same resolved path, or (both existing) the same inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_not_an_input(
    output: str | os.PathLike[str], option: str, inputs: Iterable[str | os.PathLike[str]], what: str
) -> None:
    """OutputError now where the output `option` names one of the files the command reads (`inputs`, `what`
    they are): atomically replaced, it would destroy the input it is made from (`run --trace x.npz --output
    x.npz` overwrote the trace with the table)."""
    target = Path(output)
    for path in inputs:
        if _same_file(target, Path(path)):
            raise OutputError(f"{option} {output} is the {what} this command reads; write the output elsewhere")


def check_file_apart_from_folder(
    file: str | os.PathLike[str],
    file_option: str,
    folder: str | os.PathLike[str],
    folder_option: str,
    writes: Callable[[str], bool],
) -> None:
    """OutputError now where the output file `file_option` is the output folder `folder_option` itself, or a
    file in it that the folder's set (`writes(name)`: whether the set has a file of that name) would replace
    after it was written; any other file in that folder is fine."""
    target, home = Path(file), Path(folder)
    if _same_file(target, home):
        raise OutputError(f"{file_option} {file} and {folder_option} {folder} are the same path (a file and a folder)")
    if _same_file(target.parent, home) and writes(target.name):
        raise OutputError(
            f"{file_option} {file} would be replaced by the file of that name that {folder_option} {folder} writes"
        )


def check_distinct_inputs(paths: Iterable[str | os.PathLike[str]], what: str) -> None:
    """ConfigError naming the first of `paths` that names a file or folder given earlier, also in another
    spelling (`./x.npz` and `x.npz`, a symbolic link and its target): every command that takes several inputs
    of one kind refuses a repeat, as a comma-separated list refuses a repeated item, rather than doing the work
    twice or once without a word. `what` names them in the message ("--trace", "trace", "run folder")."""
    given: dict[Path, str] = {}
    for raw in paths:
        resolved = Path(raw).resolve()
        if resolved in given:
            same = "" if given[resolved] == str(raw) else f" (as {given[resolved]} too)"
            raise ConfigError(f"{what} {raw} is given twice{same}; give each once")
        given[resolved] = str(raw)


def _check_folders(target: Path, folder: Path) -> None:
    """`folder` exists or can be made: the nearest of it and the folders above it that exists is a folder
    this process may create entries in."""
    absolute = folder.absolute()
    nearest = next(p for p in (absolute, *absolute.parents) if p.exists())  # the root always exists
    if not nearest.is_dir():
        raise OutputError(f"cannot write {target}: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: no permission to write in {nearest}")


def atomic_write_text(path: str | os.PathLike[str], text: str, *, create_folder: bool = True) -> Path:
    """Write `text` (UTF-8, '\\n' line ends) to `path` atomically."""
    return atomic_write(path, lambda tmp: _write_text(tmp, text), create_folder=create_folder)


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build the files of folder `path` in a temporary folder next to it (yielded); when the block finishes
    without an error they are moved into `path` (created if missing; other files already there are kept,
    same-named ones replaced), and when it raises, the temporary folder is removed and nothing appears.

    A missing `path` is created by renaming the temporary folder, so the whole set appears at once.
    """
    target = Path(path)
    check_output_folder(target)
    anchor = target.absolute().parent
    while not anchor.exists():  # build next to the nearest folder that exists; create the rest at the end
        anchor = anchor.parent
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=anchor))
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        yield staging
        try:
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(staging, 0o755)  # mkdtemp creates 0700
                os.replace(staging, target)
                _fsync_folder(target.parent)
            else:
                items = sorted(staging.iterdir())
                blocked = [item.name for item in items if (target / item.name).is_dir()]
                if blocked:
                    raise OutputError(f"cannot write {target}: {', '.join(blocked)} in it is a directory")
                for item in items:
                    os.replace(item, target / item.name)
                _fsync_folder(target)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_text(tmp: Path, text: str) -> None:
    with tmp.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk where the platform allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
