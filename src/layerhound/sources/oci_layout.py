"""OCI image layouts: ``oci:DIR[:REF]`` and ``oci-archive:FILE[:REF]``.

A layout is an ``oci-layout`` marker, an ``index.json`` and content-addressed
``blobs/<alg>/<hex>``. The same reader serves a directory and a tar file; the
tar is read in place (random access), never extracted. Blob paths are only
ever built from a validated digest, so a hostile manifest cannot make us open
``../../etc/shadow``.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from layerhound.errors import BlobError, ManifestError, SourceError
from layerhound.layers.layer import describe
from layerhound.layers.ref import BlobKind, BlobSource
from layerhound.layers.stream import sniff_compression
from layerhound.sources.base import MAX_JSON_BLOB, BlobStore, Image, load_json
from layerhound.sources.hostfile import open_regular, read_regular
from layerhound.sources.manifest import (
    CONTAINERD_NAME,
    REF_NAME,
    classify,
    images_from_descriptors,
    is_attestation,
)
from layerhound.sources.refs import OCI, OCI_ARCHIVE, Reference

_DIGEST_RE = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")
MAX_LINK_HOPS = 16

TarReadMode = Literal["r:", "r:gz", "r:bz2", "r:xz"]
"""The ``tarfile.open`` modes a random-access archive is read with."""


def blob_path(digest: str) -> str:
    """``blobs/<alg>/<hex>`` for a digest we accept; ``BlobError`` otherwise.

    The only place a blob's location is derived, and only from a digest that
    is sha256/sha512 with lowercase hex: never from any other string.
    """
    match = _DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise BlobError(f"refusing blob digest {digest!r}: not sha256/sha512 with lowercase hex")
    algo = match.group(1) or match.group(3)
    hexpart = match.group(2) or match.group(4)
    return f"blobs/{algo}/{hexpart}"


def digest_of_blob_path(name: str) -> str | None:
    """The digest a ``blobs/<alg>/<hex>`` path names, None for other paths."""
    parts = normalize_member(name).split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        digest = f"{parts[1]}:{parts[2]}"
        if _DIGEST_RE.fullmatch(digest):
            return digest
    return None


# ---------------------------------------------------------------- directories


class DirectoryBlobStore(BlobStore):
    """Blobs of a layout directory on the host."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self, digest: str) -> bool:
        """Whether the blob is present (False for digests we would refuse)."""
        try:
            return (self.root / blob_path(digest)).is_file()
        except BlobError:
            return False

    def source_of(self, digest: str) -> BlobSource:
        return BlobSource("oci", str(self.root))

    def open(self, digest: str) -> AbstractContextManager[BinaryIO]:
        path = self.root / blob_path(digest)
        try:
            return open_regular(path, f"oci:{self.root}: blob {digest}", self.root)
        except FileNotFoundError as exc:
            raise BlobError(f"blob {digest} is missing from {self.root}") from exc
        except OSError as exc:
            raise BlobError(f"cannot read blob {digest} in {self.root}: {exc.strerror}") from exc


# ---------------------------------------------------------------- tar files


def normalize_member(name: str) -> str:
    """A tar member name as a canonical relative path (``./a//b`` → ``a/b``)."""
    name = posixpath.normpath(name.lstrip("/"))
    return "" if name == "." else name


class TarArchive:
    """Random access to the members of a tar file, without extracting it.

    The member table is read once; each ``open`` uses its own file handle, so
    several layers can be read at the same time, even from several threads.
    Compressed archives (gzip, bzip2, xz) work, but every blob read then
    decompresses the archive from its start up to that blob.
    """

    def __init__(self, path: Path, transport: str) -> None:
        self.path = path
        self.transport = transport
        if not path.exists():
            raise SourceError(f"{transport}: {path} does not exist")
        if path.is_dir():
            hint = " (use oci: for a layout directory)" if transport == OCI_ARCHIVE else ""
            raise SourceError(f"{transport}: {path} is a directory, not a tar file{hint}")
        try:
            open_regular(path, transport).close()  # a FIFO or device is refused before tarfile blocks on it
        except OSError as exc:
            raise SourceError(f"{transport}: cannot read {path}: {exc.strerror}") from exc
        self._mode = self._sniff_mode()
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(path, self._mode) as archive:
                for info in archive:
                    self.members[normalize_member(info.name)] = info
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise SourceError(f"{transport}: {path} is not a readable tar file: {describe(exc)}") from exc

    def _sniff_mode(self) -> TarReadMode:
        try:
            with open(self.path, "rb") as fileobj:
                head = fileobj.read(8)
        except OSError as exc:
            raise SourceError(f"{self.transport}: cannot read {self.path}: {exc.strerror}") from exc
        compression = sniff_compression(head)
        modes: dict[str, TarReadMode] = {"none": "r:", "gzip": "r:gz", "bzip2": "r:bz2", "xz": "r:xz"}
        if compression not in modes:
            raise SourceError(
                f"{self.transport}: {self.path} is {compression}-compressed; decompress it first"
            )
        return modes[compression]

    def find(self, name: str) -> tarfile.TarInfo | None:
        """The regular-file member a path names, following links inside the tar."""
        name = normalize_member(name)
        for _ in range(MAX_LINK_HOPS):
            info = self.members.get(name)
            if info is None:
                return None
            if info.issym():
                base = "" if info.linkname.startswith("/") else posixpath.dirname(name)
                name = normalize_member(posixpath.join(base, info.linkname))
            elif info.islnk():
                name = normalize_member(info.linkname)
            else:
                return info if info.isreg() else None
        raise BlobError(f"{self.transport}: {self.path}: too many links resolving {name!r}")

    def has(self, name: str) -> bool:
        """Whether a regular file (or a link to one) exists at ``name``."""
        return self.find(name) is not None

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        """Open one member's bytes; ``BlobError`` when it is missing."""
        info = self.find(name)
        if info is None:
            raise BlobError(f"{self.transport}: {name} is missing from {self.path}")
        try:
            archive = tarfile.open(self.path, self._mode)  # noqa: SIM115 - entered below, once opened
        except (tarfile.TarError, OSError) as exc:
            raise BlobError(f"{self.transport}: cannot reopen {self.path}: {describe(exc)}") from exc
        with archive:
            fileobj = archive.extractfile(info)
            if fileobj is None:  # pragma: no cover - find() returns regular files only
                raise BlobError(f"{self.transport}: {name} in {self.path} is not a file")
            # extractfile() returns a tarfile.ExFileObject, an io.BufferedReader.
            yield cast(BinaryIO, fileobj)

    def read(self, name: str, limit: int = MAX_JSON_BLOB) -> bytes | None:
        """A small member whole (None when missing); refuses more than ``limit`` bytes."""
        info = self.find(name)
        if info is None:
            return None
        if info.size > limit:
            raise ManifestError(f"{self.transport}: {name} in {self.path} is larger than {limit} bytes")
        try:
            with self.open(name) as fileobj:
                return fileobj.read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise SourceError(f"{self.transport}: cannot read {name} in {self.path}: {describe(exc)}") from exc


class ArchiveBlobStore(BlobStore):
    """Blobs of an OCI layout stored inside a tar file."""

    def __init__(self, archive: TarArchive) -> None:
        self.archive = archive

    def exists(self, digest: str) -> bool:
        """Whether the blob is present (False for digests we would refuse)."""
        try:
            return self.archive.has(blob_path(digest))
        except BlobError:
            return False

    def source_of(self, digest: str) -> BlobSource:
        kind: BlobKind = "oci-archive" if self.archive.transport == OCI_ARCHIVE else "docker-archive"
        return BlobSource(kind, str(self.archive.path))

    def open(self, digest: str) -> AbstractContextManager[BinaryIO]:
        path = blob_path(digest)
        if not self.archive.has(path):
            raise BlobError(f"blob {digest} is missing from {self.archive.path}")
        return self.archive.open(path)


# ---------------------------------------------------------------- layouts


class Layout(ABC):
    """The files of one OCI layout, wherever they are stored."""

    location: str
    """How to name the layout in messages (transport and path)."""
    store: DirectoryBlobStore | ArchiveBlobStore

    @abstractmethod
    def read_file(self, name: str) -> bytes | None:
        """A small top-level file (``index.json``, ``oci-layout``), None if missing."""


class DirectoryLayout(Layout):
    """A layout directory (``oci:DIR``)."""

    def __init__(self, root: Path) -> None:
        self.location = f"oci:{root}"
        if not root.exists():
            raise SourceError(f"oci: {root} does not exist")
        if not root.is_dir():
            raise SourceError(f"oci: {root} is not a directory (use oci-archive: for a tar file)")
        self.root = root
        self.store = DirectoryBlobStore(root)

    def read_file(self, name: str) -> bytes | None:
        path = self.root / name
        try:
            return read_regular(path, self.location, MAX_JSON_BLOB, self.root)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceError(f"{self.location}: cannot read {name}: {exc.strerror}") from exc


class ArchiveLayout(Layout):
    """A layout inside a tar file (``oci-archive:FILE``, new ``docker save``)."""

    def __init__(self, archive: TarArchive) -> None:
        self.location = f"{archive.transport}:{archive.path}"
        self.archive = archive
        self.store = ArchiveBlobStore(archive)

    def read_file(self, name: str) -> bytes | None:
        return self.archive.read(name)


def read_index(layout: Layout) -> list[dict[str, Any]]:
    """Check the ``oci-layout`` marker and return index.json's descriptors."""
    marker = layout.read_file("oci-layout")
    if marker is None:
        raise SourceError(f"{layout.location} is not an OCI image layout: no oci-layout file")
    load_json(marker, f"{layout.location}: oci-layout")
    data = layout.read_file("index.json")
    if data is None:
        raise SourceError(f"{layout.location} is not an OCI image layout: no index.json")
    index = load_json(data, f"{layout.location}: index.json")
    if classify(index, f"{layout.location}: index.json") != "index":
        raise ManifestError(f"{layout.location}: index.json is not an image index")
    descriptors: list[dict[str, Any]] = index["manifests"]  # a list: classify() said "index"
    if not all(isinstance(d, dict) for d in descriptors):
        raise ManifestError(f"{layout.location}: index.json has a malformed descriptor")
    return descriptors


def ref_names(descriptor: dict[str, Any]) -> list[str]:
    """The names a top-level descriptor answers to (ref.name, containerd name)."""
    annotations = descriptor.get("annotations")
    if not isinstance(annotations, dict):
        return []
    return [str(annotations[k]) for k in (REF_NAME, CONTAINERD_NAME) if annotations.get(k)]


def layout_images(layout: Layout, reference: Reference) -> list[Image]:
    """The images a reference selects in a layout (every image without REF)."""
    descriptors = read_index(layout)
    wanted = reference.ref
    if wanted is None:
        roots = []
        for desc in descriptors:
            if is_attestation(desc):
                continue
            names = ref_names(desc)
            label = names[0] if names else desc.get("digest")
            roots.append((reference.with_ref(label if isinstance(label, str) else None), desc))
        if not roots:
            raise SourceError(f"{layout.location} contains no images")
        return images_from_descriptors(layout.store, roots)
    matches = [d for d in descriptors if wanted in ref_names(d) or d.get("digest") == wanted]
    if not matches and wanted.startswith(("sha256:", "sha512:")) and layout.store.exists(wanted):
        # A digest may also name a manifest inside an index (one platform).
        matches = [{"digest": wanted}]
    if not matches:
        available = sorted({n for d in descriptors for n in ref_names(d)})
        listing = ", ".join(available) or "none (use a digest)"
        raise SourceError(f"{layout.location}: no image named {wanted!r}; available: {listing}")
    return images_from_descriptors(layout.store, [(reference.original, d) for d in matches])


def open_oci(reference: Reference) -> list[Image]:
    """Images of ``oci:DIR[:REF]``."""
    assert reference.transport == OCI and reference.path is not None
    return layout_images(DirectoryLayout(Path(reference.path)), reference)


def open_oci_archive(reference: Reference) -> list[Image]:
    """Images of ``oci-archive:FILE[:REF]``, read from the tar in place."""
    assert reference.transport == OCI_ARCHIVE and reference.path is not None
    archive = TarArchive(Path(reference.path), OCI_ARCHIVE)
    return layout_images(ArchiveLayout(archive), reference)


__all__ = [
    "ArchiveBlobStore",
    "ArchiveLayout",
    "DirectoryBlobStore",
    "DirectoryLayout",
    "Layout",
    "TarArchive",
    "blob_path",
    "digest_of_blob_path",
    "layout_images",
    "open_oci",
    "open_oci_archive",
]
