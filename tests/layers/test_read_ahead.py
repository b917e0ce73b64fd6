"""The read-ahead thread in front of a layer's tar walk: bytes, errors and ends as without it."""

from __future__ import annotations

import io
import threading

import pytest

from layerhound.errors import CorruptLayer
from layerhound.layers.stream import CHUNK, ReadAhead


class Failing(io.RawIOBase):
    """Gives ``good`` bytes, then fails as a broken decompressor would."""

    def __init__(self, good: bytes) -> None:
        self._good = io.BytesIO(good)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._good.readinto(buffer)
        if n:
            return n
        raise CorruptLayer("inflating failed")


def test_every_byte_arrives_in_order() -> None:
    data = bytes(range(256)) * (5 * CHUNK // 256 + 17)
    ahead = ReadAhead(io.BytesIO(data))
    reader = io.BufferedReader(ahead, 4096)
    assert reader.read() == data
    assert reader.read(1) == b""
    ahead.close()


def test_an_error_of_the_stream_is_raised_where_the_reader_meets_it() -> None:
    ahead = ReadAhead(Failing(b"x" * (3 * CHUNK)))
    assert len(ahead.read(3 * CHUNK)) > 0
    with pytest.raises(CorruptLayer, match="inflating failed"):
        while ahead.read(CHUNK):
            pass
    ahead.close()


def test_closing_early_stops_the_thread_without_reading_everything() -> None:
    endless = Endless()
    ahead = ReadAhead(endless)
    assert ahead.read(10) == b"\0" * 10
    ahead.close()
    assert not any(t.name == "layerhound-read-ahead" and t.is_alive() for t in threading.enumerate())
    assert endless.chunks <= 10  # the queue's depth, plus the chunk in hand: never the whole stream


class Endless(io.RawIOBase):
    def __init__(self) -> None:
        self.chunks = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self.chunks += 1
        buffer[:] = b"\0" * len(buffer)
        return len(buffer)
