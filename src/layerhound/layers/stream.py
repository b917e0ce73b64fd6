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
from typing import Any, Protocol, cast

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
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    return "none"


def decompressing_reader(raw: io.BufferedReader[Any]) -> tuple[ByteStream, str]:
    """Wrap a buffered raw stream in the decompressor its magic bytes call for.

    The media type is not trusted: registries and ``docker save`` mislabel
    layers, and the magic bytes are what the runtime itself would act on.
    """
    compression = sniff_compression(raw.peek(8)[:8])
    stream: ByteStream
    if compression == "gzip":
        # isal.igzip ships no annotations; IGzipFile is a gzip.GzipFile subclass.
        stream = igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
    elif compression == "zstd":
        stream = zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, closefd=False
        )
    elif compression == "xz":
        stream = lzma.LZMAFile(raw, mode="rb")  # noqa: SIM115 - returned to the caller
    elif compression == "bzip2":
        stream = bz2.BZ2File(raw, mode="rb")
    else:
        stream = raw
    return stream, compression


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

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            if self._ended:
                return 0
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            if not item:
                self._ended = True
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
