"""Write files so that a crash or an error never leaves a half-written result behind.

Every writer goes to a temporary file in the destination folder, then renames it into place:
rename is atomic on POSIX, so readers see the old file or the new one, never a mixture.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from qbench.errors import QbenchError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds."""
    dest = Path(path)
    if dest.is_dir():
        raise QbenchError(f"cannot write {dest}: it is a folder")
    ensure_dir(dest.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise QbenchError(f"cannot write {dest}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; results are meant to be shared (served, copied), so give them the
    # permissions an ordinary open() would have under the user's umask
    os.chmod(tmp_path, 0o666 & ~_current_umask())
    try:
        try:
            yield tmp_path
        except OSError as exc:  # a full disk, a file-size limit, a vanished folder: the user's to fix
            raise QbenchError(f"cannot write {dest}: {exc.strerror or exc}") from None
        try:
            os.replace(tmp_path, dest)
        except OSError as exc:
            raise QbenchError(f"cannot write {dest}: {exc.strerror or exc}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create an output folder (and its parents), or say in one line why it cannot be one."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise QbenchError(f"cannot write into {folder}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QbenchError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None
    return folder


def check_output_dir(path: str | os.PathLike) -> Path:
    """Say in one line, before long work starts, why ``path`` could not become an output folder;
    create nothing (a run that fails later must not leave an empty folder behind)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise QbenchError(f"cannot write into {folder}: it is a file, not a folder")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise QbenchError(f"cannot create the folder {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise QbenchError(f"cannot create the folder {folder}: {existing} is not writable")
    return folder


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))
