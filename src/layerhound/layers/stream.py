"""Byte streams of a blob: digest verification and decompression.

Checks happen while streaming: a blob is hashed as it is read, and the digest
is compared when the stream reaches its end. A caller that stops early must
call ``finish()`` so the check always runs.
"""

from __future__ import annotations

import bz2
import contextlib
import hashlib
import io
import lzma
import queue
import threading
from typing import IO, Any, Protocol, cast

import zstandard
from isal import igzip, igzip_lib

from layerhound.errors import BlobError, CorruptLayer, DigestMismatch

CHUNK = 1 << 20

ISAL_ERROR = cast(type[Exception], igzip_lib.IsalError)
"""ISA-L's decompression error: not a zlib.error (its stub types it as an instance)."""

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"
LZ4_MAGIC = b"\x04\x22\x4d\x18"
ZSTD_SKIPPABLE = b"\x2a\x4d\x18"
"""Bytes 1-3 of a zstd skippable frame's magic (byte 0 is 0x50-0x5F): a valid start of a zstd stream."""


def is_zstd(head: bytes) -> bool:
    """A zstd stream starts with a frame or a skippable frame."""
    return head.startswith(ZSTD_MAGIC) or (head[:1] != b"" and head[0] & 0xF0 == 0x50 and head[1:4] == ZSTD_SKIPPABLE)


class ZstdFrames:
    """Follows the frame and block structure of a zstd stream as its compressed bytes pass.

    Why: python-zstandard's stream reader ends quietly where its input ends, even inside a
    frame, so a truncated ``.tar.zst`` would read as a shorter, valid one. The zstd tool
    refuses a stream that ends inside a frame, and data after the last frame that is no
    frame; so does this. It reads only block headers (one per up to 128 KiB).
    """

    def __init__(self, raw: ByteStream) -> None:
        self._raw = raw
        self._want = 4
        self._got = b""
        self._skip = 0
        self._state = "magic"
        self._checksum = False
        self.offset = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        if data:
            self._feed(data)
        elif size != 0 and (self._state != "magic" or self._got or self._skip):
            raise zstandard.ZstdError(f"zstd stream is truncated (it ends inside a frame at byte {self.offset})")
        return data

    def _feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._want - len(self._got), end - pos)
            self._got += data[pos : pos + take]
            pos += take
            if len(self._got) == self._want:
                field, self._got = self._got, b""
                self._advance(field, self.offset + pos - len(field))
        self.offset += end

    def _advance(self, field: bytes, at: int) -> None:
        if self._state == "magic":
            if field == ZSTD_MAGIC:
                self._state, self._want = "descriptor", 1
            elif field[0] & 0xF0 == 0x50 and field[1:] == ZSTD_SKIPPABLE:
                self._state, self._want = "skippable", 4
            else:
                raise zstandard.ZstdError(f"data that is no zstd frame at byte {at}")
        elif self._state == "skippable":
            self._skip = int.from_bytes(field, "little")
            self._state, self._want = "magic", 4
        elif self._state == "descriptor":
            descriptor = field[0]
            if descriptor & 0x08:
                raise zstandard.ZstdError(f"reserved bit set in a zstd frame header at byte {at}")
            single_segment = descriptor >> 5 & 1
            size_field = (single_segment, 2, 4, 8)[descriptor >> 6]
            self._checksum = bool(descriptor & 0x04)
            self._skip = (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3] + size_field
            self._state, self._want = "block", 3
        else:  # a block header
            value = int.from_bytes(field, "little")
            kind, size = value >> 1 & 3, value >> 3
            if kind == 3:
                raise zstandard.ZstdError(f"reserved zstd block type at byte {at}")
            self._skip = 1 if kind == 1 else size
            if value & 1:  # the frame's last block
                self._skip += 4 if self._checksum else 0
                self._state, self._want = "magic", 4


def zstd_reader(raw: ByteStream) -> ByteStream:
    """A zstd stream of one or more frames, decompressed, that refuses truncation and trailing garbage."""
    frames = cast(IO[bytes], ZstdFrames(raw))  # it has the read() the reader calls
    return zstandard.ZstdDecompressor().stream_reader(frames, read_across_frames=True, closefd=False)


XZ_CHUNK = 1 << 16


class XzStreams(io.RawIOBase):
    """An xz file read as the xz tool reads it: one or more streams, stream padding, nothing else.

    Why: ``lzma.LZMAFile`` stops quietly at the first bytes after a stream that do not
    start another one, so garbage (or a second payload) appended to a ``.tar.xz`` is
    never seen; ``xz -d`` refuses it ("file format not recognized"), and so does this.
    Between and after streams only stream padding is allowed: NUL bytes, a multiple
    of four of them. A stream that ends early raises ``EOFError``, as LZMAFile does.
    """

    def __init__(self, raw: ByteStream) -> None:
        self._raw = raw
        self._stream: lzma.LZMADecompressor | None = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        self._pending = b""
        self._padding = 0
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._next(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _input(self) -> bytes:
        data, self._pending = self._pending or self._raw.read(XZ_CHUNK), b""
        return data

    def _next(self, size: int) -> bytes:
        while True:
            stream = self._stream
            if stream is None:
                if not self._between_streams():
                    return b""
                continue
            data = self._input() if stream.needs_input else b""
            if stream.needs_input and not data:
                raise EOFError("xz stream is truncated (it ends before its end-of-stream marker)")
            self._offset += len(data)
            try:
                out = stream.decompress(data, size)
            except lzma.LZMAError as exc:
                raise lzma.LZMAError(f"{exc} (xz stream near byte {self._offset})") from exc
            if stream.eof:
                self._pending, self._stream, self._padding = stream.unused_data, None, 0
                self._offset -= len(self._pending)
            if out:
                return out

    def _between_streams(self) -> bool:
        """Skip stream padding; True when another stream starts, False at the end."""
        while True:
            data = self._input()
            if not data:
                if self._padding % 4:
                    raise lzma.LZMAError(f"xz stream padding of {self._padding} bytes is not a multiple of four")
                return False
            rest = data.lstrip(b"\0")
            self._padding += len(data) - len(rest)
            self._offset += len(data) - len(rest)
            if not rest:
                continue
            if self._padding % 4 or not XZ_MAGIC.startswith(rest[: len(XZ_MAGIC)]):
                raise lzma.LZMAError(f"data after the xz stream at byte {self._offset} is no xz stream")
            self._pending, self._stream = rest, lzma.LZMADecompressor(lzma.FORMAT_XZ)
            return True


def xz_reader(raw: ByteStream) -> ByteStream:
    """An xz file of one or more streams, decompressed, that refuses trailing garbage."""
    return io.BufferedReader(XzStreams(raw), XZ_CHUNK)


class ByteStream(Protocol):
    """What the readers here use of the stream they wrap: ``read``.

    Blob files, tar members and every decompressor qualify, though typeshed
    gives them no common ``BinaryIO``/``IO[bytes]`` base (``GzipFile`` is not
    an ``IO[bytes]``).
    """

    def read(self, size: int = -1, /) -> bytes: ...


def parse_digest(digest: str) -> tuple[str, str]:
    """Split ``sha256:<hex>`` and check it names an algorithm we can verify."""
    algo, sep, hexpart = digest.partition(":")
    if not sep or algo not in ("sha256", "sha512") or not hexpart:
        raise DigestMismatch(digest, "unsupported digest", "blob")
    expected_len = 64 if algo == "sha256" else 128
    if len(hexpart) != expected_len or any(c not in "0123456789abcdef" for c in hexpart):
        raise CorruptLayer(f"malformed digest {digest!r}")
    return algo, hexpart


class VerifyingReader(io.RawIOBase):
    """Reads a raw stream, hashing every byte; verifies digest and size at EOF."""

    def __init__(
        self,
        raw: ByteStream,
        digest: str | None,
        size: int | None = None,
        what: str = "blob",
    ) -> None:
        self._raw = raw
        self._digest = digest
        self._algo = parse_digest(digest)[0] if digest else "sha256"
        self._hash = hashlib.new(self._algo)
        self._expected_size = size if size is not None and size >= 0 else None
        self._what = what
        self.bytes_read = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._raw.read(len(buffer))
        except OSError as exc:  # the source failed (disk, pipe), not the bytes
            raise BlobError(f"cannot read {self._what}: {exc.strerror or exc}") from exc
        n = len(data)
        if n:
            buffer[:n] = data
            self._hash.update(data)
            self.bytes_read += n
            if self._expected_size is not None and self.bytes_read > self._expected_size:
                raise CorruptLayer(
                    f"{self._what} is longer than its descriptor says "
                    f"({self._expected_size} bytes)"
                )
        else:
            self._verify()
        return n

    @property
    def hexdigest(self) -> str:
        """The hash of what has been read so far, as ``algo:hex``."""
        return f"{self._algo}:{self._hash.hexdigest()}"

    def finish(self) -> None:
        """Read whatever is left and verify; idempotent."""
        while self.read(CHUNK):
            pass
        self._verify()

    def _verify(self) -> None:
        if self._verified:
            return
        self._verified = True
        if self._expected_size is not None and self.bytes_read != self._expected_size:
            raise CorruptLayer(
                f"{self._what} is truncated: {self.bytes_read} of "
                f"{self._expected_size} bytes"
            )
        if self._digest and self.hexdigest != self._digest:
            raise DigestMismatch(self._digest, self.hexdigest, self._what)


class HashingReader(io.RawIOBase):
    """Hashes a decompressed stream so the layer's diff_id can be checked."""

    def __init__(self, inner: ByteStream) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        """The inner stream's bytes as they come, uncopied (``readinto`` copies them once more)."""
        data = self._inner.read(size)
        self._hash.update(data)
        self.bytes_read += len(data)
        if not data and size != 0:
            self.at_eof = True
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._hash.update(data)
        self.bytes_read += n
        if n == 0 and len(buffer):
            self.at_eof = True
        return n

    at_eof = False
    """True once the inner stream has reported its end."""

    @property
    def hexdigest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def sniff_compression(head: bytes) -> str:
    """Name the compression of a blob from its first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if is_zstd(head):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    return "none"


def decompressor(raw: ByteStream, compression: str) -> ByteStream:
    """``raw`` read through the decompressor ``compression`` names ("none": as is).

    The one place a name becomes a reader; which name applies is the caller's sniffing
    (a layer's magic bytes here, an archive member's stricter test in ``archives``).
    """
    if compression == "gzip":
        # isal.igzip ships no annotations; IGzipFile is a gzip.GzipFile subclass.
        return igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
    if compression == "zstd":
        return zstd_reader(raw)
    if compression == "xz":
        return xz_reader(raw)
    if compression == "bzip2":
        return bz2.BZ2File(cast(IO[bytes], raw), mode="rb")
    if compression == "lzma":
        return lzma.LZMAFile(cast(IO[bytes], raw), mode="rb", format=lzma.FORMAT_ALONE)
    if compression == "lz4":
        import lz4.frame  # type: ignore[import-untyped]  # lz4 ships no annotations; loaded by the first member

        return cast(ByteStream, lz4.frame.LZ4FrameFile(cast(IO[bytes], raw), mode="rb"))
    return raw


def decompressing_reader(raw: io.BufferedReader[Any]) -> tuple[ByteStream, str]:
    """Wrap a buffered raw stream in the decompressor its magic bytes call for.

    The media type is not trusted: registries and ``docker save`` mislabel
    layers, and the magic bytes are what the runtime itself would act on.
    """
    compression = sniff_compression(raw.peek(8)[:8])
    return decompressor(raw, compression), compression


READ_AHEAD_CHUNKS = 8
"""Chunks (of ``CHUNK`` bytes) a ``ReadAhead`` thread may hold before the reader catches up:
8 MiB per layer being read, whatever its size."""


class ReadAhead(io.RawIOBase):
    """Reads ``inner`` in a thread of its own, up to ``READ_AHEAD_CHUNKS`` chunks ahead.

    Why: reading a layer blob, verifying its digest, inflating it and hashing the tar
    for its diff_id all release the GIL, while walking the tar holds it. With the
    first four in this thread, the two run on two cores instead of taking turns.
    An error of the inner stream is raised from ``read`` where the reader would have
    met it; ``close`` stops the thread and waits for it, so the inner stream is
    never read from two threads (callers close before touching it themselves).
    """

    def __init__(self, inner: ByteStream, depth: int = READ_AHEAD_CHUNKS) -> None:
        self._inner = inner
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pending = memoryview(b"")
        self._ended = False
        self._thread = threading.Thread(target=self._produce, name="layerhound-read-ahead", daemon=True)
        self._thread.start()

    def readable(self) -> bool:
        return True

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._inner.read(CHUNK)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reader, raised there
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def next_chunk(self) -> bytes:
        """The next chunk as the thread read it, uncopied; ``b""`` at the end.

        For a reader that takes whole chunks (``tarstream.TarReader``); ``readinto`` copies from them.
        """
        if self._ended:
            return b""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        if not item:
            self._ended = True
        return item

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            item = self.next_chunk()
            if not item:
                return 0
            self._pending = memoryview(item)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        """Stop the thread and wait for it; what it read ahead is dropped."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()
        super().close()
