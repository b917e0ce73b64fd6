"""The unit of work a crawl hands out: judge one layer, given only values.

``judge_layer_task`` runs in a worker process (a local pool or a Dask worker
on another host). It receives a ``LayerRef``, the ``RegistrySettings`` and the
names of the detectors to run, builds its own registry session, streams and
verifies the blob, and returns a ``LayerOutcome``: the layer's result, or the
structured failure. Nothing here touches the results store: only the
coordinator writes, so workers never share a database connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from layerhound.detectors.base import Detector
from layerhound.detectors.registry import ALL_DETECTORS
from layerhound.detectors.user_rules import RuleSources, UserRulesDetector
from layerhound.errors import ScanError
from layerhound.layers.layer import Layer
from layerhound.layers.ref import LayerRef
from layerhound.layers.walk import walk_layer
from layerhound.model import Failure, LayerResult
from layerhound.registry.session import RegistrySession
from layerhound.registry.settings import RegistrySettings
from layerhound.scan import failure_of, internal_error
from layerhound.sources.reopen import open_layer
from layerhound.store.kept_files import FileKeeper, KeepSettings, KeptManifest, covered_by


@dataclass(frozen=True)
class LayerOutcome:
    """What became of one layer task."""

    digest: str | None
    diff_id: str | None
    detectors: tuple[str, ...]
    """The detectors it ran (all of them, or those whose parts were missing)."""
    result: LayerResult | None = None
    failure: Failure | None = None
    kept: KeptManifest | None = None
    """Which of its files were kept (``store.kept_files``), when the task was asked to keep them."""


def detectors_named(names: Sequence[str], rules: RuleSources | None = None) -> list[Detector]:
    """The built-in detectors of these names, in the fixed order; then the user's rules (``--rules``),
    which travel as their text and are compiled once per worker process."""
    wanted = set(names)
    found: list[Detector] = [d for d in ALL_DETECTORS if d.name in wanted]
    if rules is not None and UserRulesDetector.name in wanted:
        found.append(UserRulesDetector(rules))
    return found


def user_rules_of(detectors: Sequence[Detector]) -> RuleSources | None:
    """The user's rules among ``detectors`` (what a task must carry for a worker to run them)."""
    return next((d.sources for d in detectors if isinstance(d, UserRulesDetector)), None)


def judge_layer(
    opener: Callable[[], Layer],
    digest: str | None,
    diff_id: str | None,
    detectors: Sequence[Detector],
    names: tuple[str, ...],
    keep: KeepSettings | None = None,
) -> LayerOutcome:
    """Open and walk one layer; never raises for a bad layer, nor for a bug of ours on it
    (its images fail, the crawl goes on). Where the walk runs (a worker, the coordinator for a
    host layer) makes no difference to the outcome. With ``keep``, the layer's candidate
    files are kept in that directory (``store.kept_files``) as they pass."""
    keeper = FileKeeper(keep, covered_by(detectors)) if keep is not None else None
    kept = keeper.manifest if keeper is not None else None
    try:
        result = walk_layer(opener(), detectors, keeper)
    except ScanError as exc:
        return LayerOutcome(digest, diff_id, names, failure=failure_of(exc), kept=kept)
    except MemoryError:
        raise
    except Exception as exc:
        return LayerOutcome(digest, diff_id, names, failure=failure_of(internal_error(f"layer {digest}", exc)),
                            kept=kept)
    finally:
        if keeper is not None:
            keeper.close()
    return LayerOutcome(digest, diff_id, names, result=result, kept=kept)


def judge_layer_task(ref: LayerRef, settings: RegistrySettings, detector_names: tuple[str, ...],
                     rules: RuleSources | None = None, keep: KeepSettings | None = None) -> LayerOutcome:
    """Walk one layer blob with the named detectors, through this process's own registry session."""
    detectors = detectors_named(detector_names, rules)
    with RegistrySession(settings) as session:
        return judge_layer(lambda: open_layer(ref, session), ref.digest, ref.diff_id, detectors, detector_names,
                           keep)
