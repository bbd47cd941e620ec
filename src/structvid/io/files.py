"""Atomic file writing: nothing half-written is ever left under its final name."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


def describe_os_error(e: OSError, path: str | Path | None = None, action: str = "writing") -> str:
    """One line for a failed file operation, naming the path: "no space left on device while writing FILE"."""
    target = path if path is not None else (e.filename or "?")
    reasons = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOTDIR: "a parent of the path is a file, not a folder",
        errno.EEXIST: "a file stands where a folder is needed (a parent of the path is a file)",
        errno.EISDIR: "is a folder, not a file",
        errno.ENOENT: "no such file or folder",
        errno.ENAMETOOLONG: "file name too long",
    }
    reason = reasons.get(e.errno, e.strerror or e.__class__.__name__)
    return f"{reason} while {action} {target}"


@contextlib.contextmanager
def output_errors(path: str | Path, action: str = "writing") -> Iterator[None]:
    """Turn an OSError raised inside the block into a UserError naming `path` (read-only folder, full disk...)."""
    from structvid.errors import UserError

    try:
        yield
    except OSError as e:
        raise UserError(describe_os_error(e, path, action)) from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on error removed.

    The temp name keeps the suffix so that writers that pick a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; final files get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
