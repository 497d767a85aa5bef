"""The export's staging folder and its all-or-nothing publication.

Every artifact (the parity reports and the engine manifest included) is written into a hidden folder
inside the work folder, ``.deblur-export-<pid>-<random>``, and renamed to its final name only once
all of them exist. Before the first rename every target is checked, so a foreseeable collision (a
folder under an artifact's name, a work folder that cannot be written) publishes nothing. A rename
that still fails midway is undone with the ones before it, and every file they replaced is put back:
each existing file is hard-linked (or, where links are not supported, moved) into the staging folder
before its replacement is renamed over it.

The owner's PID in the folder's name lets the next run remove folders that a killed export (SIGKILL,
power loss) left behind, and never the folder of an export that is still running.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from deblur.runtime.errors import InputError
from deblur.runtime.fileio import fsync_dir, pid_alive
from deblur.runtime.interrupts import signals_deferred

log = logging.getLogger("deblur")
PREFIX = ".deblur-export-"
_OWNED = re.compile(re.escape(PREFIX) + r"(\d+)-[^-]+")  # .deblur-export-<pid>-<mkdtemp's random part>
REPLACED = ".replaced"  # inside the staging folder: the files publication replaced, until it is done


def make_staging(workdir: Path) -> Path:
    """A new staging folder in ``workdir`` named after this process."""
    try:
        return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=workdir))
    except OSError as e:
        raise InputError(f"{_what(e, workdir)}; nothing was published", hint="free space or pass another --workdir") from None


def remove_stale(workdir: Path) -> list[Path]:
    """Remove the staging folders in ``workdir`` whose owner process is gone; return them.

    Folders without an owner PID in their name (other tools, older versions) are left alone.
    """
    removed = []
    for folder in sorted(workdir.glob(PREFIX + "*")):
        m = _OWNED.fullmatch(folder.name)
        if not m or folder.is_symlink() or not folder.is_dir() or pid_alive(int(m.group(1))):
            continue
        _put_back(folder / REPLACED, workdir)
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed %s, left by export process %s, which no longer runs", folder, m.group(1))
        removed.append(folder)
    return removed


def _put_back(replaced: Path, workdir: Path) -> None:
    """A publication killed between moving a file aside and renaming its successor in: the old file
    goes back where nothing stands (never over a file)."""
    if not replaced.is_dir():
        return
    for old in replaced.iterdir():
        target = workdir / old.name
        if not os.path.lexists(target):
            with contextlib.suppress(OSError):
                os.rename(old, target)
                log.warning("put back %s, which an export killed while publishing had moved aside", target)


def check_targets(names: list[str], workdir: Path) -> None:
    """Refuse, before anything is renamed, a publication that cannot succeed; one line naming the file."""
    hint = "nothing was published; move it away or pass another --workdir"
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise InputError("cannot publish into this folder: it is not writable; nothing was published", workdir,
                         hint="pass a writable --workdir")
    folder = os.stat(workdir)
    me = os.geteuid()
    for name in names:
        target = workdir / name
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            raise InputError("cannot publish this artifact: a folder has its name", target, hint=hint)
        if folder.st_mode & stat.S_ISVTX and me not in (0, st.st_uid, folder.st_uid):
            raise InputError("cannot publish this artifact: the file there belongs to another user in a sticky "
                             "folder", target, hint=hint)


def publish(staged: dict[str, Path], workdir: Path, staging: Path) -> list[Path]:
    """Rename every staged file (final name -> staged path, in order) into ``workdir``, all or none.

    Raises InputError naming the file when publication fails; then every final name holds what it held
    before. SIGINT and SIGTERM wait until the renames (or their undoing) are done.
    """
    check_targets(list(staged), workdir)
    for name, path in staged.items():
        _fsync(path, workdir / name)  # a full disk shows here at the latest, before anything is renamed
    replaced = staging / REPLACED
    replaced.mkdir(exist_ok=True)
    done: list[tuple[Path, Path | None, bool]] = []  # (target, the file it held, set aside; renamed in yet)
    with signals_deferred():
        for name, path in staged.items():
            target = workdir / name
            try:
                old = _set_aside(target, replaced / name)
                done.append((target, old, False))
                os.replace(path, target)
                done[-1] = (target, old, True)
            except OSError as e:
                left = _undo(done)
                undone = ("nothing was published" if not left else
                          "COULD NOT UNDO the publication of " + ", ".join(left))
                raise InputError(f"{_what(e, target)}; {undone}", target,
                                 hint="free space or move what is in the way, or pass another --workdir") from None
        fsync_dir(workdir)
    return [t for t, _, _ in done]


def _set_aside(target: Path, keep: Path) -> Path | None:
    """Keep the file at ``target`` (a hard link, else moved) so a failed publication can restore it."""
    if not os.path.lexists(target):
        return None
    try:
        os.link(target, keep, follow_symlinks=False)
    except OSError:  # no hard links here (some FUSE and network file systems)
        os.rename(target, keep)
    return keep


def _undo(done: list[tuple[Path, Path | None, bool]]) -> list[str]:
    """Undo renames, newest first: restore each replaced file, remove each new one; return what failed."""
    left = []
    for target, old, placed in reversed(done):
        try:
            if old is not None:
                os.replace(old, target)
            elif placed:
                os.unlink(target)
        except OSError as e:
            log.error("undoing publication: %s: %s", target, e.strerror or e)
            left.append(str(target))
    return left


def _fsync(path: Path, final: Path) -> None:
    try:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    except OSError as e:
        raise InputError(f"{_what(e, final)}; nothing was published", final,
                         hint="free space or pass another --workdir") from None


def _what(e: OSError, path: Path) -> str:
    return f"disk full writing {path}" if e.errno == errno.ENOSPC else f"cannot write {path} ({e.strerror or e})"
