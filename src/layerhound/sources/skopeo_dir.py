"""skopeo's directory transport: ``dir:PATH``, as ``skopeo copy … dir:PATH`` writes it.

The directory holds ``version`` ("Directory Transport Version: 1.x"),
``manifest.json`` (the image's manifest, or with ``--all`` its index) and every
blob as a file named by its hex digest; an index's own manifests are
``<hex>.manifest.json``. The format promises those names, so a blob whose bytes
do not hash to its name is refused, as in an OCI layout. Blob paths are only
ever built from a validated digest.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

from layerhound.errors import BlobError, SourceError
from layerhound.layers.ref import BlobSource
from layerhound.sources.base import MAX_JSON_BLOB, BlobStore, Image, load_json
from layerhound.sources.hostfile import open_regular, read_regular
from layerhound.sources.manifest import classify, images_from_descriptors
from layerhound.sources.refs import DIR, Reference

_DIGEST_RE = re.compile(r"sha256:([0-9a-f]{64})")
VERSION_PREFIX = "Directory Transport Version: 1."


class SkopeoDirStore(BlobStore):
    """The blobs and manifests of one skopeo directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root_manifest: tuple[str, bytes] | None = None

    def root_manifest(self) -> tuple[str, bytes]:
        """``manifest.json``: its digest (sha256 of its bytes) and the bytes."""
        if self._root_manifest is None:
            path = self.root / "manifest.json"
            try:
                data = read_regular(path, f"dir:{self.root}", MAX_JSON_BLOB, self.root)
            except FileNotFoundError:
                raise SourceError(f"dir:{self.root} has no manifest.json: not a skopeo directory") from None
            except OSError as exc:
                raise SourceError(f"dir:{self.root}: cannot read manifest.json: {exc.strerror}") from None
            self._root_manifest = ("sha256:" + hashlib.sha256(data).hexdigest(), data)
        return self._root_manifest

    def source_of(self, digest: str) -> BlobSource:
        return BlobSource("dir", str(self.root))

    def open(self, digest: str) -> AbstractContextManager[BinaryIO]:
        match = _DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
        if match is None:
            raise BlobError(f"refusing blob digest {digest!r}: a skopeo directory names blobs by sha256")
        if self._root_manifest is not None and digest == self._root_manifest[0]:
            return open_regular(self.root / "manifest.json", f"dir:{self.root}", self.root)
        for name in (match.group(1), f"{match.group(1)}.manifest.json"):
            try:
                return open_regular(self.root / name, f"dir:{self.root}", self.root)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise BlobError(f"dir:{self.root}: cannot read {name}: {exc.strerror}") from exc
        raise BlobError(f"blob {digest} is missing from dir:{self.root}")


def open_skopeo_dir(reference: Reference) -> list[Image]:
    """The image (or, for ``skopeo copy --all``, every platform's image) of ``dir:PATH``."""
    assert reference.transport == DIR and reference.path is not None
    root = Path(reference.path)
    if not root.is_dir():
        raise SourceError(f"dir: {root} is not a directory")
    try:
        version = (root / "version").read_text(errors="replace").strip()
    except FileNotFoundError:
        raise SourceError(f"dir:{root} has no version file: not a skopeo directory") from None
    except OSError as exc:
        raise SourceError(f"dir:{root}: cannot read version: {exc.strerror}") from None
    if not version.startswith(VERSION_PREFIX):
        raise SourceError(f"dir:{root}: unsupported directory transport version {version[:60]!r}")
    store = SkopeoDirStore(root)
    digest, data = store.root_manifest()
    what = f"{reference.original}: manifest.json"
    classify(load_json(data, what), what)  # a clear error for what is no manifest or index
    return images_from_descriptors(store, [(reference.original, {"digest": digest})])
