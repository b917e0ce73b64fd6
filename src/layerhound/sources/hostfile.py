"""Files of a layout or archive on the host, opened only when they are what they claim.

Why: a FIFO named ``index.json`` blocks a reader forever, a blob that is ``/dev/zero`` never
ends, and a symlink out of a layout directory reads a file the layout does not hold. A
runtime's store never contains any of them, so each is refused with a message saying what
the file is instead. The check is on the opened descriptor (``fstat``), so the file cannot be
swapped between the check and the read; ``O_NONBLOCK`` keeps even opening a FIFO from blocking.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from layerhound.errors import SourceError

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def open_regular(path: Path, what: str, root: Path | None = None) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (and, given ``root``, lies inside it).

    Raises ``SourceError`` naming what it is otherwise; ``FileNotFoundError`` and other
    ``OSError``s of the open itself are the caller's to word.
    """
    if root is not None:
        real, base = os.path.realpath(path), os.path.realpath(root)
        if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
            raise SourceError(f"{what}: {path} links out of {root} (to {real}); refused")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise SourceError(f"{what}: {path} is {kind}, not a regular file; refused")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, what: str, limit: int, root: Path | None = None) -> bytes:
    """The whole of a small regular file, refused over ``limit`` bytes (checked on the open file)."""
    with open_regular(path, what, root) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise SourceError(f"{what}: {path} is larger than {limit} bytes")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise SourceError(f"{what}: {path} grew past {limit} bytes while it was read")
    return data
