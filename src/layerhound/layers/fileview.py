"""A part of a host file read where it lies, shaped like the memoryview the zip reader takes."""

from __future__ import annotations

import os


class FileView:
    """Part of a host file as ``_zip_members`` reads a memoryview: ``len``, slices, ``bytes()``.

    Why: a zip on the host is opened where it lies, read with ``os.pread`` (which never moves the
    file's offset) as its directory and members are reached, instead of being held whole.
    """

    __slots__ = ("_end", "_fd", "_start")

    def __init__(self, fd: int, start: int, end: int) -> None:
        self._fd, self._start, self._end = fd, start, end

    def __len__(self) -> int:
        return self._end - self._start

    def __getitem__(self, part: slice) -> FileView:
        start, stop, _ = part.indices(len(self))
        return FileView(self._fd, self._start + start, self._start + max(start, stop))

    def __bytes__(self) -> bytes:
        data = os.pread(self._fd, len(self), self._start)
        if len(data) != len(self):
            raise OSError(f"the file shrank while it was read ({len(data)} of {len(self)} bytes at {self._start})")
        return data
