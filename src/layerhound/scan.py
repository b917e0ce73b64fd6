"""Scan references: open each source, walk its layers once, assess each image.

A failure scoped to one image (missing blob, corrupt layer, digest mismatch)
becomes that image's ``error`` verdict; every other image goes on. Progress is
reported to an observer so the core never draws on a terminal itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from layerhound.assess.verdict import assess_image
from layerhound.detectors.base import Detector
from layerhound.errors import ScanError
from layerhound.layers.layer import Layer
from layerhound.layers.walk import walk_layer
from layerhound.model import ImageResult, LayerResult, Verdict
from layerhound.sources import open_images
from layerhound.sources.base import Image


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
    )


def scan_image(
    image: Image, detectors: Sequence[Detector], observer: ScanObserver | None = None
) -> ImageResult:
    """Walk every layer of one image and assess it; never raises ``ScanError``."""
    observer = observer or SilentObserver()
    done: list[LayerResult] = []
    platform: str | None = None
    try:
        platform = image.platform
        config = image.config
        layers = image.layers
        observer.image_started(image.ref, platform, len(layers))
        for index, layer in enumerate(layers):
            observer.layer_started(index, layer)
            result = walk_layer(layer, detectors)
            done.append(result)
            observer.layer_finished(index, result)
        verdict = assess_image(image.ref, image.digest, platform, config, done)
    except ScanError as exc:
        verdict = error_result(image.ref, exc, image.digest, platform, done)
    observer.image_finished(verdict)
    return verdict


def scan_references(
    references: Sequence[str],
    detectors: Sequence[Detector],
    platform: str = "all",
    observer: ScanObserver | None = None,
) -> Iterator[ImageResult]:
    """Yield one result per image (per platform) of every reference, in order."""
    for reference in references:
        try:
            images = open_images(reference, platform)
        except ScanError as exc:
            result = error_result(reference, exc)
            if observer is not None:
                observer.image_finished(result)
            yield result
            continue
        for image in images:
            yield scan_image(image, detectors, observer)
