"""The unit of work a crawl hands out: judge one layer, given only values.

``judge_layer_task`` runs in a worker process (a local pool or a Dask worker
on another host). It receives a ``LayerRef``, the ``RegistrySettings`` and the
names of the detectors to run, builds its own registry session, streams and
verifies the blob, and returns a ``LayerOutcome``: the layer's result, or the
structured failure. Nothing here touches the results store: only the
coordinator writes, so workers never share a database connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from layerhound.detectors.base import Detector
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.errors import ScanError
from layerhound.layers.ref import LayerRef
from layerhound.layers.walk import walk_layer
from layerhound.model import Failure, LayerResult
from layerhound.registry.session import RegistrySession
from layerhound.registry.settings import RegistrySettings
from layerhound.scan import failure_of, internal_error
from layerhound.sources.reopen import open_layer


@dataclass(frozen=True)
class LayerOutcome:
    """What became of one layer task."""

    digest: str | None
    diff_id: str | None
    detectors: tuple[str, ...]
    """The detectors it ran (all of them, or those whose parts were missing)."""
    result: LayerResult | None = None
    failure: Failure | None = None


def detectors_named(names: Sequence[str]) -> list[Detector]:
    """The built-in detectors of these names, in the fixed order."""
    wanted = set(names)
    return [d for d in ALL_DETECTORS if d.name in wanted]


def judge_layer_task(ref: LayerRef, settings: RegistrySettings, detector_names: tuple[str, ...]) -> LayerOutcome:
    """Walk one layer blob with the named detectors; never raises for a bad layer."""
    detectors = detectors_named(detector_names)
    try:
        with RegistrySession(settings) as session:
            result = walk_layer(open_layer(ref, session), detectors)
    except ScanError as exc:
        return LayerOutcome(ref.digest, ref.diff_id, detector_names, failure=failure_of(exc))
    except MemoryError:
        raise
    except Exception as exc:  # a bug of ours on this layer: its images fail, the crawl goes on
        failure = failure_of(internal_error(f"layer {ref.digest}", exc))
        return LayerOutcome(ref.digest, ref.diff_id, detector_names, failure=failure)
    return LayerOutcome(ref.digest, ref.diff_id, detector_names, result=result)
