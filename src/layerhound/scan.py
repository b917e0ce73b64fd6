"""Scan references: open each source, walk its layers once, assess each image.

A failure scoped to one image (missing blob, corrupt layer, digest mismatch)
becomes that image's ``error`` verdict; every other image goes on. Progress is
reported to an observer so the core never draws on a terminal itself.

With a ``LayerCache``, every layer of an image is looked up before any blob is
opened; only the layers the cache lacks are walked (a layer that lacks only
some detectors' parts is walked with just those), and each is stored as soon
as its walk (and so its digest check) has succeeded. The merged view and the
verdict are always built afresh from the per-layer results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from layerhound.assess.verdict import assess_image
from layerhound.detectors.base import Detector
from layerhound.errors import InternalError, ReferenceError_, ScanError, SourceError
from layerhound.layers.layer import Layer
from layerhound.layers.walk import walk_layer
from layerhound.model import Failure, ImageResult, LayerResult, Verdict
from layerhound.sources import open_images
from layerhound.sources.base import Image, StreamedImage
from layerhound.sources.options import SourceOptions
from layerhound.sources.refs import parse_reference, source_name

if TYPE_CHECKING:  # a scan without the layer cache never loads the store
    from layerhound.registry.session import RegistrySession
    from layerhound.scan_pool import LayerPool
    from layerhound.store.cache import LayerCache
    from layerhound.store.layer_rows import StoredLayer


class ScanObserver(Protocol):
    """Receives progress; every method is optional to act on."""

    def image_started(self, ref: str, platform: str | None, layer_count: int) -> None: ...

    def layer_started(self, index: int, layer: Layer) -> None: ...

    def layer_finished(self, index: int, result: LayerResult) -> None: ...

    def image_finished(self, result: ImageResult) -> None: ...


class SilentObserver:
    """The default observer: reports nothing."""

    def image_started(self, ref: str, platform: str | None, layer_count: int) -> None:
        pass

    def layer_started(self, index: int, layer: Layer) -> None:
        pass

    def layer_finished(self, index: int, result: LayerResult) -> None:
        pass

    def image_finished(self, result: ImageResult) -> None:
        pass


def error_result(
    ref: str,
    error: ScanError,
    digest: str | None = None,
    platform: str | None = None,
    layers: Sequence[LayerResult] = (),
) -> ImageResult:
    """The ``error`` verdict for an image that could not be scanned."""
    return ImageResult(
        ref=ref,
        digest=digest,
        platform=platform,
        verdict=Verdict.ERROR,
        reasons=[str(error)],
        layers=list(layers),
        error=str(error),
        failure=failure_of(error),
    )


def failure_of(error: ScanError) -> Failure:
    """The structured form of an image's error."""
    return Failure(kind=error.kind, message=str(error), status=error.status, retryable=error.retryable)


class LayerFailed(ScanError):
    """An image that fails because one of its layers did elsewhere (a worker); keeps that layer's failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.kind = failure.kind
        self.status = failure.status
        self.retryable = failure.retryable


def internal_error(ref: str, exc: Exception) -> InternalError:
    """A bug, not a user mistake: one odd image must not end a registry-wide run."""
    return InternalError(f"internal error while scanning {ref}: {type(exc).__name__}: {exc} (please report)")


def scan_image(
    image: Image,
    detectors: Sequence[Detector],
    observer: ScanObserver | None = None,
    *,
    cache: LayerCache | None = None,
    pool: LayerPool | None = None,
) -> ImageResult:
    """Walk every layer of one image and assess it; never raises ``ScanError``.

    With a ``pool``, an image of several large layers has them walked at once
    (``scan_pool``); the result is the same.
    """
    observer = observer or SilentObserver()
    done: list[LayerResult] = []
    platform: str | None = None
    if cache is not None:
        image.memo = cache
    try:
        platform = image.platform
        if isinstance(image, StreamedImage):
            done = judge_streamed(image, detectors, observer, cache)
            config = image.config
        else:
            config = image.config
            layers = image.layers
            observer.image_started(image.ref, platform, len(layers))
            known = cache.lookup(layers, detectors) if cache is not None else [None] * len(layers)
            if pool is not None and pool.worth_it(layers, known, detectors):
                done, failure = pool.judge(layers, known, detectors, cache, observer)
                if failure is not None:
                    raise failure
            else:
                for index, (layer, hit) in enumerate(zip(layers, known, strict=True)):
                    observer.layer_started(index, layer)
                    result = judge_layer(layer, detectors, hit, cache)
                    done.append(result)
                    observer.layer_finished(index, result)
        verdict = assess_image(image.ref, image.digest, platform, config, done)
        verdict.reasons.extend(f"note: {note}" for note in image.notes)
    except ScanError as exc:
        verdict = error_result(image.ref, exc, image.digest, platform, done)
    except MemoryError:
        raise
    except Exception as exc:
        # The image gets verdict "error" (exit 2) with the exception named,
        # and every other image is still scanned.
        verdict = error_result(image.ref, internal_error(image.ref, exc), image.digest, platform, done)
    observer.image_finished(verdict)
    return verdict


def judge_layer(
    layer: Layer, detectors: Sequence[Detector], stored: StoredLayer | None, cache: LayerCache | None
) -> LayerResult:
    """The layer's result from what is stored, walking it (with the missing detectors only) when needed.

    Raises ``ScanError`` unless the blob was read whole and verified.
    """
    missing = missing_detectors(detectors, stored)
    if stored is not None and not missing:
        return stored.result(layer, detectors)
    return kept(layer, detectors, stored, cache, missing, walk_layer(layer, missing))


def missing_detectors(detectors: Sequence[Detector], stored: StoredLayer | None) -> list[Detector]:
    """The detectors a layer must be walked with: those whose results are not stored."""
    return stored.missing(detectors) if stored is not None else list(detectors)


def kept(
    layer: Layer,
    detectors: Sequence[Detector],
    stored: StoredLayer | None,
    cache: LayerCache | None,
    ran: Sequence[Detector],
    fresh: LayerResult,
) -> LayerResult:
    """A fresh walk with ``ran`` stored in the cache, and joined with what was stored already."""
    if cache is not None:
        cache.store(layer, fresh, ran, with_walk=stored is None)
    return fresh if stored is None else stored.with_fresh(fresh, detectors)


def judge_streamed(
    image: StreamedImage, detectors: Sequence[Detector], observer: ScanObserver, cache: LayerCache | None
) -> list[LayerResult]:
    """Every layer's result of an image read in one pass, in the image's own layer order.

    What the cache holds completely is not read; the rest is walked as the
    stream brings it, and placed by the diff_id its walk computed (a layer
    can sit at several positions). Raises ``ScanError`` when the stream lacks a
    layer the image names.
    """
    layers = image.layers
    observer.image_started(image.ref, image.platform, len(layers))
    known = cache.lookup(layers, detectors) if cache is not None else [None] * len(layers)
    results: list[LayerResult | None] = [
        hit.result(layer, detectors) if hit is not None and not hit.missing(detectors) else None
        for layer, hit in zip(layers, known, strict=True)
    ]
    positions: dict[str, list[int]] = {}
    for index, layer in enumerate(layers):
        positions.setdefault(layer.diff_id or "", []).append(index)
    wanted = {layers[i].diff_id or "" for i, result in enumerate(results) if result is None}
    for index, result in enumerate(results):
        if result is not None:
            observer.layer_finished(index, result)
    if not wanted:
        return [result for result in results if result is not None]
    for streamed in image.stream(set(wanted)):
        claimed = positions.get(streamed.diff_id or "", [])
        first = claimed[0] if claimed else next(i for i, r in enumerate(results) if r is None)
        observer.layer_started(first, streamed)
        hit = known[first] if claimed else None
        fresh = judge_layer(streamed, detectors, hit, cache if claimed else None)
        diff_id = streamed.walked_diff_id or ""
        if diff_id not in wanted:
            continue  # a layer of another image in the same export
        wanted.discard(diff_id)
        # Every position of one diff_id holds the same layer (its digest is the diff_id): one result, stored once.
        placed = _relabelled(fresh, layers[positions[diff_id][0]])
        if not claimed and cache is not None:
            cache.store(layers[positions[diff_id][0]], placed, detectors)
        for index in positions[diff_id]:
            results[index] = placed
            observer.layer_finished(index, placed)
    if wanted:
        raise SourceError(f"{image.ref}: the stream lacks layer(s) {', '.join(sorted(wanted))}")
    return [result for result in results if result is not None]


def _relabelled(result: LayerResult, layer: Layer) -> LayerResult:
    """A result walked from a stream member that named no digest, as the result of ``layer``."""
    if result.digest == layer.digest:
        return result
    findings = [dataclasses.replace(f, layer=layer.digest) for f in result.findings]
    facts = [dataclasses.replace(f, layer=layer.digest) for f in result.facts]
    return dataclasses.replace(result, digest=layer.digest, findings=findings, facts=facts)


def scan_references(
    references: Sequence[str],
    detectors: Sequence[Detector],
    platform: str = "all",
    observer: ScanObserver | None = None,
    cache: LayerCache | None = None,
    *,
    session: RegistrySession | None = None,
    options: SourceOptions | None = None,
    pool: LayerPool | None = None,
) -> Iterator[ImageResult]:
    """Yield one result per image (per platform) of every reference, in order.

    With a ``cache``, every image reuses the layers it holds and adds the ones
    it had to read. Registry references are reached through ``session``;
    ``options`` says where bare names are looked for (default: the registry);
    ``pool`` walks the large layers of an image at once (default: one at a time).
    """
    for reference in references:
        try:
            images = open_images(reference, platform, session, options)
        except ScanError as exc:
            result = error_result(reference, exc)
        except MemoryError:
            raise
        except Exception as exc:  # a bug inside a source: that reference's error, not the end of the run
            result = error_result(reference, internal_error(reference, exc))
        else:
            for image in images:
                judged = scan_image(image, detectors, observer, cache=cache, pool=pool)
                judged.source = image.source
                yield judged
            continue
        result.source = source_of(reference)
        if observer is not None:
            observer.image_finished(result)
        yield result


def source_of(reference: str) -> str | None:
    """Where a reference's images come from, as reports name it: ``registry``, ``oci``, ``docker-archive``…

    For a reference that could not be opened; an opened image says where it was read (``Image.source``),
    which for a bare name may be a local engine.
    """
    try:
        return source_name(parse_reference(reference).transport)
    except ReferenceError_:
        return None
