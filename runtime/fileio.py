"""Atomic file writes and hashing.

A file under its final name is always complete: write to a temp file in the same folder, fsync,
then ``os.replace``; an interrupted write leaves only a ``.tmp`` file that the next write replaces.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deblur.runtime.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success fsync it and rename it to ``path``.

    Every way the write can fail (``path`` is a folder, the folder cannot be written, the disk is
    full) is one InputError naming the file, and nothing is left under its name."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError("is a folder; a file name is needed here", path, hint="name a file inside it, e.g. DIR/out.json")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise InputError(f"cannot write to folder {folder} ({e.strerror})", hint="choose a writable output folder") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp (and some writers) make 0600; use the usual mode
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        fsync_dir(folder)
    except OSError as e:
        what = "disk full" if e.errno == errno.ENOSPC else f"cannot write ({e.strerror or e})"
        raise InputError(f"{what} writing this file; nothing was written under its name", path,
                         hint="free space or choose another output folder") from None
    except Exception:
        # writers that wrap ENOSPC in their own error (torch.save: "enforce fail ... unexpected pos")
        if disk_full(folder):
            raise InputError("disk full writing this file; nothing was written under its name", path,
                             hint="free space or choose another output folder") from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def check_writable_folder(folder: str | Path, flag: str) -> None:
    """Prove a file can be written in ``folder`` before long work starts, leaving nothing behind (folders
    made for the test are removed again): a file in its place, ``/proc/x``, a read-only file system (which
    root cannot write either) or a full disk is one InputError naming it and ``flag``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"is a file; {flag} needs a folder", folder, hint=f"choose another {flag}")
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".deblur-write-test"):
            pass
    except OSError as e:
        what = "disk full" if e.errno == errno.ENOSPC else e.strerror or str(e)
        raise InputError(f"cannot write into this folder ({what})", folder, hint=f"choose a writable {flag}") from None
    finally:
        for p in made:  # deepest first
            with contextlib.suppress(OSError):
                p.rmdir()


def disk_full(folder: str | Path, slack: int = 64 << 10) -> bool:
    """Whether the file system of ``folder`` has (almost) no space left for this user: tells a full disk
    from other failures when a writer reports it in its own words."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < slack


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (symlinks and hard links resolved); False when either does not exist.
    For refusing an output that is an input: the same file, not the same string."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def can_create(path: str | Path) -> bool:
    """Whether a file could be made at ``path`` (not a folder; its nearest existing folder is writable): checked
    before long work starts, so a bad output path fails at once rather than at the end."""
    if Path(path).is_dir():
        return False
    folder = Path(path).resolve().parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    return existing.is_dir() and os.access(existing, os.W_OK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; not supported on every platform.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts): temp folders named after their owner's PID
    are removed by a later run only once the owner is gone, never while it still writes."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
