"""Reopen a ``LayerRef`` in this process: the worker side of a crawl.

The blob is opened where the ref says (a registry through this process's own
``RegistrySession``, a layout directory, an archive read in place) and wrapped
in the same ``TarBlobLayer`` as when the image was first opened, so digest and
diff_id are verified exactly as they would have been.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import BinaryIO

from layerhound.errors import BlobError, SourceError
from layerhound.layers.layer import TarBlobLayer
from layerhound.layers.ref import LayerRef
from layerhound.registry.session import RegistrySession
from layerhound.sources.oci_layout import ArchiveBlobStore, DirectoryBlobStore, TarArchive
from layerhound.sources.refs import DOCKER_ARCHIVE, OCI_ARCHIVE
from layerhound.sources.skopeo_dir import SkopeoDirStore


def open_layer(ref: LayerRef, session: RegistrySession | None) -> TarBlobLayer:
    """A layer whose ``members()`` streams and verifies the blob ``ref`` names."""
    if ref.digest is None:
        raise BlobError("a layer reference without a digest cannot be reopened")
    opener = partial(_open_blob, ref, session)
    return TarBlobLayer(ref.digest, ref.size, ref.media_type, opener, ref.diff_id, ref.source)


def _open_blob(ref: LayerRef, session: RegistrySession | None) -> AbstractContextManager[BinaryIO]:
    source = ref.source
    assert ref.digest is not None
    if source.kind == "registry":
        if session is None or source.repository is None:
            raise SourceError(f"layer {ref.digest}: a registry layer needs a registry session and a repository")
        return session.client(source.location).open_blob(source.repository, ref.digest)
    if source.kind == "oci":
        return DirectoryBlobStore(Path(source.location)).open(ref.digest)
    if source.kind == "dir":
        return SkopeoDirStore(Path(source.location)).open(ref.digest)
    transport = OCI_ARCHIVE if source.kind == "oci-archive" else DOCKER_ARCHIVE
    archive = TarArchive(Path(source.location), transport)
    if source.member is not None:
        if not archive.has(source.member):
            raise BlobError(f"{transport}: {source.member} is missing from {source.location}")
        return archive.open(source.member)
    return ArchiveBlobStore(archive).open(ref.digest)
