"""The crawl's coordinator: plan, hand out layers, assess images, record everything.

1. **Plan.** Each repository's tags are listed as ``layerhound tags`` lists
   them (the Hub API with push dates on Docker Hub, ``tags/list`` and config
   dates elsewhere), filtered by window, glob and platform; every (tag, digest)
   is recorded, so a tag that moved keeps its old digests. Single references
   are resolved with ``HEAD``.
2. **Skip what is known.** A digest whose images all have a verdict at the
   current rules version is not fetched again (not even its manifest: on
   Docker Hub that is a pull).
3. **Layers once.** Every image's layers are looked up in the store first;
   each layer that is missing (or lacks some detectors' parts) is handed to the
   executor exactly once per crawl, however many images share it, as a
   ``LayerRef`` a worker reopens itself. Results are stored as they arrive.
4. **Assess.** When the last layer of an image is in, the coordinator builds
   the merged view and the verdict and stores it with its findings (one
   transaction). A layer that fails fails every image that needs it, with the
   layer's structured failure.
5. **Lineage.** Every judged image learns its nearest infected ancestor.

Only the coordinator writes to the store and fetches manifests, so the Docker
Hub pull budget (``PullBudget``) is the coordinator's to respect: when it
runs out, the crawl stops cleanly (status ``stopped``) and the same command
later continues where it stopped. A crawl killed at any moment loses no stored
result: every write is one transaction, and every write is idempotent.
"""

from __future__ import annotations

import datetime
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from layerhound import __version__
from layerhound.assess.verdict import ASSESS_VERSION, assess_image
from layerhound.crawl.executor import Executor, TaskFuture
from layerhound.crawl.targets import Target
from layerhound.crawl.worker import LayerOutcome, judge_layer, judge_layer_task, user_rules_of
from layerhound.detectors.base import Detector
from layerhound.detectors.registry import ALL_DETECTORS, rules_version
from layerhound.errors import PullBudgetExhausted, RegistryError, ScanError
from layerhound.fs.merged import ViewCache
from layerhound.layers.layer import Layer
from layerhound.layers.walk import walk_version
from layerhound.lineage.graph import Lineage
from layerhound.model import Failure, ImageResult, LayerResult, Verdict
from layerhound.registry.hub import parse_timestamp
from layerhound.registry.session import RegistrySession
from layerhound.registry.tags import tag_history
from layerhound.report.from_store import stored_result
from layerhound.scan import LayerFailed, error_result, internal_error
from layerhound.sources import open_images
from layerhound.sources.base import Image
from layerhound.sources.manifest import parse_platform
from layerhound.store.kept_files import KeepFiles, KeepSettings, directory_size, remove_stale
from layerhound.store.layer_rows import StoredLayer
from layerhound.store.results import ImageRow, ResultStore

KEEP_SHARE_FACTOR = 8
KEEP_SHARE_MIN = 64 * 1024 * 1024
"""A layer task may keep up to 8 times the blob's size (at least 64 MiB) of compressed files, within what is left."""
DECODED_LAYERS = 64
"""Layer results kept decoded in memory for the images still to assess (shared bases)."""


def verdict_version(detectors: Sequence[Detector] = ALL_DETECTORS) -> str:
    """What a stored verdict depends on: the detectors' rules, the walk and the assessment."""
    return f"{rules_version(detectors)}+{walk_version()}+a{ASSESS_VERSION}"


class CrawlObserver(Protocol):
    """Progress of a crawl; the core never draws on a terminal itself."""

    def planned(self, repository: str, tags: int) -> None: ...

    def layer_queued(self, size: int) -> None: ...

    def layer_finished(self, outcome: LayerOutcome, size: int) -> None: ...

    def image_finished(self, result: ImageResult, skipped: bool) -> None: ...

    def note(self, message: str) -> None: ...


class SilentCrawlObserver:
    def planned(self, repository: str, tags: int) -> None:
        pass

    def layer_queued(self, size: int) -> None:
        pass

    def layer_finished(self, outcome: LayerOutcome, size: int) -> None:
        pass

    def image_finished(self, result: ImageResult, skipped: bool) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass
class CrawlCounts:
    repositories: int = 0
    tags: int = 0
    images: int = 0
    images_skipped: int = 0
    """Already judged at the current rules version: nothing fetched."""
    layers_walked: int = 0
    layers_stored: int = 0
    """Found in the store already (no blob downloaded)."""
    bytes_walked: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class CrawlSummary:
    run: str
    status: str
    """``finished``, or ``stopped`` (the pull budget ran out; run again later to continue)."""
    counts: CrawlCounts
    results: list[ImageResult]
    """Every image this crawl covered, as stored (including those judged by earlier runs)."""
    stop_reason: str | None = None
    workloads: list[tuple[str, str, str, str, ImageResult]] = field(default_factory=list)
    """(namespace, pod, container, image reference, result) of every workload the crawl was given."""
    warnings: list[str] = field(default_factory=list)
    """What the user must know even without progress lines (the kept files' bound reached)."""


_Key = tuple[str, str | None]
"""A layer task's identity: blob digest and the diff_id it must have."""


@dataclass
class _Unit:
    """One thing to open: a tag's digest or a reference."""

    label: str
    reference: str
    digest: str | None = None
    """The tag's digest, when the registry told it."""


@dataclass
class _Pending:
    image: Image
    label: str
    digest: str
    platform: str | None
    config: dict[str, Any]
    layers: list[Layer]
    waiting: set[_Key]


class _StopCrawl(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Crawler:
    """One crawl; see the module docstring. ``run`` does it all."""

    def __init__(
        self,
        store: ResultStore,
        session: RegistrySession,
        executor: Executor,
        *,
        since: str | None = None,
        until: str | None = None,
        globs: Sequence[str] = (),
        platform: str = "all",
        detectors: Sequence[Detector] = ALL_DETECTORS,
        observer: CrawlObserver | None = None,
        hub_api: str | None = None,
        keep: KeepFiles | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.executor = executor
        self.since, self.until, self.globs, self.platform = since, until, tuple(globs), platform
        self.detectors = tuple(detectors)
        self.rules = verdict_version(self.detectors)
        self.observer = observer or SilentCrawlObserver()
        self.hub_api = hub_api
        self.counts = CrawlCounts()
        self.covered: dict[str, str] = {}
        """image digest → label, every image of this crawl, in order."""
        self._inflight: dict[_Key, TaskFuture] = {}
        self._layers: dict[_Key, tuple[Layer, tuple[str, ...], StoredLayer | None]] = {}
        """Every task handed out and not yet finished: its layer, detectors, and what was stored of it."""
        self._done: set[_Key] = set()
        self._failed: dict[_Key, Failure] = {}
        self._pending: list[_Pending] = []
        self._decoded: OrderedDict[_Key, LayerResult] = OrderedDict()
        self._kept: dict[_Key, LayerResult] = {}
        """Results this crawl could not store whole (a detector failed on a file, a host layer)."""
        self._host_keys: dict[Layer, _Key] = {}
        self._resolved: dict[str, str | None] = {}
        """Target text → the digest it resolved to (for naming workloads)."""
        self.filter = parse_platform(platform)
        self._views = ViewCache()
        """Merged views of shared bases: each derived image applies only its own layers."""
        self._errors: dict[str, ImageResult] = {}
        self.keep = keep
        if keep is not None:
            remove_stale(keep.directory, time.time())
        self._keep_left = keep.limit - directory_size(keep.directory) if keep is not None else 0
        """Bytes the kept files may still grow by, less what running tasks have been given."""
        self._keep_given: dict[_Key, int] = {}
        self.warnings: list[str] = []

    # -- the whole crawl -----------------------------------------------------

    def run(self, targets: Sequence[Target], args: dict[str, Any] | None = None) -> CrawlSummary:
        run = self.store.begin_run(f"layerhound {__version__}", self.rules, args or {})
        status, reason = "finished", None
        try:
            for unit in self._plan(targets):  # a repository's images are opened as soon as it is listed
                self._open(unit)
                self._collect(timeout=0)
            while self._inflight:
                self._collect(timeout=None)
        except _StopCrawl as stop:
            status, reason = "stopped", stop.reason
            self.observer.note(reason)
            while self._inflight:  # what is already downloading is kept
                self._collect(timeout=None)
        except BaseException:
            self.store.finish_run(run, "interrupted", self.counts.as_dict())
            raise
        apply_lineage(self.store, self.rules)
        self.store.finish_run(run, status, self.counts.as_dict())
        results = [self.result(digest, label) for digest, label in self.covered.items()]
        return CrawlSummary(run, status, self.counts, results, reason, self._workloads(targets), self.warnings)

    # -- planning ------------------------------------------------------------

    def observe_tags(self, target: Target) -> None:
        """Record a repository's current tags and digests (no image is opened or judged)."""
        for _ in self._plan([target]):
            pass

    def _plan(self, targets: Sequence[Target]) -> Iterator[_Unit]:
        """Each target's units, target by target (so layers are judged while later targets are listed)."""
        seen: set[str] = set()
        for target in targets:
            if target.workload is not None:
                w = target.workload
                self.store.put_workload(w.namespace, w.pod, w.container, target.text)
            for unit in self._units(target):
                key = unit.digest or unit.reference
                if key not in seen:
                    seen.add(key)
                    yield unit

    def _units(self, target: Target) -> list[_Unit]:
        name = target.name
        if name is None or target.registry is None or target.repository is None:
            return [_Unit(target.text, target.text)]
        self.store.observe_repository(name, target.registry, target.repository)
        if target.every_tag:
            return self._tag_units(target, name)
        reference = f"docker://{name}@{target.digest}" if target.digest else f"docker://{name}:{target.tag}"
        label = _label_of(target)
        digest = target.digest
        if digest is None and target.tag is not None:
            try:
                digest = self.session.client(target.registry).resolve(target.repository, target.tag).digest
            except RegistryError as exc:
                self._stop_if_rate_limited(exc)
                self._record_error(label, label, exc)
                return []
            except ScanError as exc:
                self._record_error(label, label, exc)
                return []
            reference = f"docker://{name}@{digest}"
            # Only what the registry says now is a tag observation (not a digest a pod once pulled).
            self.store.observe_tag(name, target.tag, digest, None, None)
            self.counts.tags += 1
        if target.workload is not None and digest is not None:
            w = target.workload
            self.store.put_workload(w.namespace, w.pod, w.container, target.text, digest)
        self._resolved[target.text] = digest
        return [_Unit(label, reference, digest)]

    def _tag_units(self, target: Target, name: str) -> list[_Unit]:
        try:
            history = tag_history(
                f"docker://{name}", self.session, self.since, self.until, self.globs, self.platform,
                hub_api=self.hub_api, known=self._known_digest, configs=self.store,
            )
        except RegistryError as exc:
            self._stop_if_rate_limited(exc)
            self._record_error(name, name, exc)
            return []
        self.counts.repositories += 1
        self.observer.planned(name, len(history.tags))
        units = []
        for tag in history.tags:
            label = f"{name}:{tag.name}"
            if tag.digest is None:
                self._record_error(label, label, ScanError(tag.error or f"{label}: no digest"))
                continue
            date = tag.date.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z") if tag.date else None
            self.store.observe_tag(name, tag.name, tag.digest, date, tag.date_source)
            self.counts.tags += 1
            units.append(_Unit(label, f"docker://{name}@{tag.digest}", tag.digest))
        return units

    def _known_digest(self, digest: str) -> list[tuple[str | None, datetime.datetime | None]] | None:
        """A digest whose images the store has: their platforms and build dates, nothing fetched."""
        children = self.store.children(digest)
        images = [self.store.image(image) for image, _ in children]
        if not children or not self.store.children_complete(digest) or any(image is None for image in images):
            return None
        return [(image.platform, parse_timestamp(image.created)) for image in images if image is not None]

    # -- opening images ------------------------------------------------------

    def _already_judged(self, digest: str) -> list[str] | None:
        """The images of a tag's digest when every one this crawl asks for is judged (None: fetch it).

        An unfiltered crawl trusts only a complete record of an index's
        children; a ``--platform`` crawl needs those of its platform.
        """
        children = self.store.children(digest)
        if self.filter is None:
            wanted = children if self.store.children_complete(digest) else []
        else:
            wanted = [(c, p) for c, p in children if p is None or self.filter.matches(p)]
        if wanted and all(self.store.judged(image, self.rules) for image, _ in wanted):
            return [image for image, _ in wanted]
        return None

    def _open(self, unit: _Unit) -> None:
        if unit.digest is not None:
            judged = self._already_judged(unit.digest)
            if judged is not None:
                for child in judged:
                    self._skip(child, unit.label)
                return
        try:
            images = open_images(unit.reference, self.platform, self.session)
            for opened in images:
                opened.memo = self.store  # configs kept in the store: read once per crawl history
        except RegistryError as exc:
            self._stop_if_rate_limited(exc)
            self._unit_failed(unit, exc)
            return
        except ScanError as exc:
            self._unit_failed(unit, exc)
            return
        except Exception as exc:  # a bug inside a source: this unit's error, the crawl goes on
            self._unit_failed(unit, internal_error(unit.label, exc))
            return
        if unit.digest is not None:  # complete only when no platform filter left some out
            children = [(i.digest or unit.digest, i.platform) for i in images]
            self.store.put_children(unit.digest, children, complete=self.filter is None)
        for opened in images:
            self._queue(opened, unit)

    def _unit_failed(self, unit: _Unit, error: ScanError) -> None:
        """A tag's digest that could not be opened: stored under that digest (tried again next time)."""
        if unit.digest is None:
            self._record_error(unit.reference, unit.label, error)
            return
        self.covered[unit.digest] = unit.label
        self._fail_image(unit.digest, unit.label, None, error)

    def _skip(self, image: str, label: str) -> None:
        if image in self.covered:
            return
        self.covered[image] = label
        self.counts.images_skipped += 1
        self.observer.image_finished(self.result(image, label), skipped=True)

    def _queue(self, image: Image, unit: _Unit) -> None:
        digest = image.digest or unit.digest or unit.reference
        if digest in self.covered:
            return
        if image.digest is not None and self.store.judged(digest, self.rules):  # a host source may have changed
            self._skip(digest, unit.label)
            return
        self.covered[digest] = unit.label
        platform = None
        try:
            platform = image.platform
            config = image.config
            layers = image.layers
        except RegistryError as exc:
            if _rate_limited(exc):
                del self.covered[digest]  # not judged: the next crawl takes it up
            self._stop_if_rate_limited(exc)
            self._fail_image(digest, unit.label, platform, exc)
            return
        except ScanError as exc:
            self._fail_image(digest, unit.label, platform, exc)
            return
        except Exception as exc:
            self._fail_image(digest, unit.label, platform, internal_error(unit.label, exc))
            return
        self.counts.images += 1
        created = config.get("created") if isinstance(config.get("created"), str) else None
        self.store.put_image(
            ImageRow(
                digest=digest,
                platform=platform,
                config_digest=image.config_digest,
                created=created,
                diff_ids=tuple(layer.diff_id or layer.digest or "" for layer in layers),
                layers=tuple(layer.digest or "" for layer in layers),
                first_ref=unit.label,
            )
        )
        pending = _Pending(image, unit.label, digest, platform, config, layers, set())
        to_walk: list[tuple[Layer, _Key, list[Detector], StoredLayer | None]] = []
        for layer, hit in zip(layers, self.store.layers.lookup(layers, self.detectors), strict=True):
            if layer.digest:
                self.store.put_layer(layer.digest, layer.diff_id, layer.size, layer.media_type)
            key = self._key_of(layer)
            missing = hit.missing(self.detectors) if hit is not None else list(self.detectors)
            if not missing or key in self._done:
                self.counts.layers_stored += not missing
                continue
            if key in self._failed:
                failure = self._failed[key]
                self._store_result(digest, error_result(unit.label, LayerFailed(failure), digest, platform), False)
                return
            pending.waiting.add(key)
            if key not in self._inflight and all(key != k for _, k, _, _ in to_walk):
                to_walk.append((layer, key, missing, hit))
        self._pending.append(pending)
        for layer, key, missing, hit in to_walk:
            self._dispatch(layer, key, missing, hit)
        self._assess_ready()

    def _dispatch(self, layer: Layer, key: _Key, missing: Sequence[Detector], hit: StoredLayer | None) -> None:
        names = tuple(d.name for d in missing)
        self._layers[key] = (layer, names, hit)
        self.observer.layer_queued(layer.size)
        ref = layer.ref
        if ref is None:  # a host source: nothing to hand out, walk it here
            self._finished(key, self._walk_here(layer, names))
            return
        try:
            self._inflight[key] = self.executor.submit(judge_layer_task, ref, self.session.settings, names,
                                                       user_rules_of(self.detectors), self._keep_share(layer, key))
        except Exception as exc:  # a broken pool, a lost cluster: this layer fails, the crawl goes on
            self._finished(key, self._lost(layer, names, exc))

    def _keep_share(self, layer: Layer, key: _Key) -> KeepSettings | None:
        """What a task may keep: a full walk of a layer not kept yet gets a share of what is left."""
        if self.keep is None or not layer.digest or self._layers[key][2] is not None:
            return None  # a walk for some detectors only sees only their files
        existing = self.store.kept(layer.digest)
        if existing is not None and existing.complete:
            return None
        share = min(self._keep_left, max(KEEP_SHARE_FACTOR * layer.size, KEEP_SHARE_MIN))
        if share <= 0:
            self._kept_bound_reached()
            return None
        self._keep_left -= share
        self._keep_given[key] = share
        return KeepSettings(str(self.keep.directory), share)

    def _kept_bound_reached(self) -> None:
        if not self.warnings and self.keep is not None:
            self.warnings.append(
                f"the kept files in {self.keep.directory} reached their bound of {self.keep.limit} bytes "
                "(--keep-max): layers judged from then on are not kept, and `layerhound rejudge` cannot judge "
                "their images again without pulling them; raise --keep-max and crawl again to keep them"
            )
            self.observer.note(self.warnings[-1])

    def _walk_here(self, layer: Layer, names: tuple[str, ...]) -> LayerOutcome:
        detectors = [d for d in self.detectors if d.name in names]
        return judge_layer(lambda: layer, layer.digest, layer.diff_id, detectors, names)

    @staticmethod
    def _lost(layer: Layer, names: tuple[str, ...], exc: BaseException) -> LayerOutcome:
        """The outcome of a task whose worker died (out of memory, killed, the pool broken)."""
        message = (f"the worker judging layer {layer.digest} was lost ({type(exc).__name__}: {exc}); "
                   "a later crawl tries it again")
        return LayerOutcome(layer.digest, layer.diff_id, names, failure=Failure("worker", message, None, True))

    def _key_of(self, layer: Layer) -> _Key:
        """Layers without a digest (host sources) are never the same layer as another."""
        if layer.digest:
            return (layer.digest, layer.diff_id)
        key = self._host_keys.get(layer)
        if key is None:  # the layer is kept alive by the map, so its key is never reused
            key = self._host_keys[layer] = (f"host-layer-{len(self._host_keys)}", None)
        return key

    # -- results -------------------------------------------------------------

    def _collect(self, timeout: float | None) -> None:
        if not self._inflight:
            return
        done = self.executor.wait(self._inflight.values(), timeout)
        for key, future in list(self._inflight.items()):
            if future in done:
                del self._inflight[key]
                try:
                    outcome = future.result()
                except MemoryError:
                    raise
                except Exception as exc:  # BrokenProcessPool, KilledWorker, a worker's MemoryError
                    layer, names, _ = self._layers[key]
                    outcome = self._lost(layer, names, exc)
                self._finished(key, outcome)

    def _finished(self, key: _Key, outcome: LayerOutcome) -> None:
        layer, _, hit = self._layers.pop(key)
        self.observer.layer_finished(outcome, layer.size)
        given = self._keep_given.pop(key, 0)
        if outcome.kept is not None:  # a lost worker returns nothing: what it wrote stays counted as given
            self._keep_left += given - outcome.kept.used
            if outcome.result is not None and layer.digest:
                self.store.put_kept(layer.digest, outcome.kept)
            if outcome.kept.over_bound:
                self._kept_bound_reached()
            elif not outcome.kept.complete:
                self.observer.note(f"layer {layer.digest}: its files were not all kept: {outcome.kept.problem}")
        if outcome.failure is not None or outcome.result is None:
            failure = outcome.failure or Failure("internal", f"layer {outcome.digest}: no result")
            self._failed[key] = failure
            for pending in [p for p in self._pending if key in p.waiting]:
                self._pending.remove(pending)
                error = error_result(pending.label, LayerFailed(failure), pending.digest, pending.platform)
                self._store_result(pending.digest, error, skipped=False)
            return
        self.counts.layers_walked += 1
        self.counts.bytes_walked += outcome.result.stats.bytes_uncompressed
        ran = [d for d in self.detectors if d.name in outcome.detectors]
        partial = hit is not None and len(ran) < len(self.detectors)
        stored = self.store.layers.store(layer, outcome.result, ran, with_walk=not partial)
        whole = hit.with_fresh(outcome.result, self.detectors) if hit is not None and partial else outcome.result
        self._done.add(key)
        if stored and not outcome.result.stats.detector_errors and layer.digest:
            self._remember(key, whole)
        else:  # not (all) in the store: kept for every image of this crawl that needs it
            self._kept[key] = whole
        for pending in self._pending:
            pending.waiting.discard(key)
        self._assess_ready()

    def _assess_ready(self) -> None:
        ready = [p for p in self._pending if not p.waiting]
        self._pending = [p for p in self._pending if p.waiting]
        for pending in ready:
            self._assess(pending)

    def _assess(self, pending: _Pending) -> None:
        try:
            layers = self._layer_results(pending.layers)
            result = assess_image(pending.label, pending.digest, pending.platform, pending.config, layers, self._views)
            result.reasons.extend(f"note: {note}" for note in pending.image.notes)
        except ScanError as exc:
            result = error_result(pending.label, exc, pending.digest, pending.platform)
        except MemoryError:
            raise
        except Exception as exc:
            result = error_result(pending.label, internal_error(pending.label, exc), pending.digest, pending.platform)
        self._store_result(pending.digest, result, skipped=False)

    def _layer_results(self, layers: Sequence[Layer]) -> list[LayerResult]:
        results: list[LayerResult] = []
        for layer in layers:
            key = self._key_of(layer)
            result = self._kept.get(key) or self._decoded.get(key)
            if result is not None:
                if key in self._decoded:
                    self._decoded.move_to_end(key)
                results.append(result)
                continue
            [hit] = self.store.layers.lookup([layer], self.detectors)
            if hit is None or hit.missing(self.detectors):
                raise ScanError(f"layer {layer.digest} was judged but its result is not in the store")
            result = hit.result(layer, self.detectors)
            self._remember(key, result)
            results.append(result)
        return results

    def _remember(self, key: _Key, result: LayerResult) -> None:
        self._decoded[key] = result
        self._decoded.move_to_end(key)
        while len(self._decoded) > DECODED_LAYERS:
            self._decoded.popitem(last=False)

    def _fail_image(self, digest: str, label: str, platform: str | None, error: ScanError) -> None:
        self.counts.images += 1
        self._store_result(digest, error_result(label, error, digest, platform), skipped=False)

    def _record_error(self, key: str, label: str, error: ScanError) -> None:
        """A target that could not even be opened (no image digest to file it under)."""
        result = error_result(label, error)
        self.counts.errors += 1
        self._errors[key] = result
        self.covered.setdefault(key, label)
        self.observer.image_finished(result, skipped=False)

    def _store_result(self, digest: str, result: ImageResult, skipped: bool) -> None:
        if result.verdict is Verdict.ERROR:
            self.counts.errors += 1
        self.store.put_verdict(digest, self.rules, result)
        self.observer.image_finished(result, skipped)

    def _stop_if_rate_limited(self, exc: RegistryError) -> None:
        """The pull budget at its reserve, or a 429 the retries could not outlast: stop the crawl cleanly."""
        if _rate_limited(exc):
            raise _StopCrawl(self._budget_message(exc)) from None

    def _budget_message(self, exc: RegistryError) -> str:
        return (
            f"{exc}. The crawl stopped cleanly: everything judged so far is stored. Run the same command again "
            "once the pull window has passed; it continues where it stopped (images already judged are not pulled)."
        )

    # -- lineage and results -------------------------------------------------


    def result(self, digest: str, label: str) -> ImageResult:
        """The stored judgement of an image as an ``ImageResult`` (reasons include "built on …")."""
        if digest in self._errors:
            return self._errors[digest]
        return stored_result(self.store, digest, label, self.rules)

    def _workloads(self, targets: Sequence[Target]) -> list[tuple[str, str, str, str, ImageResult]]:
        found = []
        for target in targets:
            if target.workload is None:
                continue
            w = target.workload
            digest = self._resolved.get(target.text)
            if digest is None:
                result = self._errors.get(_label_of(target)) or error_result(
                    target.text, ScanError(f"{target.text}: could not be resolved"))
                found.append((w.namespace, w.pod, w.container, target.text, result))
                continue
            images = [image for image, _ in self.store.children(digest)] or [digest]
            for image in images:
                label = self.covered.get(image, target.text)
                found.append((w.namespace, w.pod, w.container, target.text, self.result(image, label)))
        return found


def apply_lineage(store: ResultStore, rules: str) -> None:
    """Every image judged at ``rules`` learns its nearest infected ancestor (the verdicts' ``base``)."""
    lineage = Lineage.from_store(store, rules)
    with store.transaction():
        for digest, node in lineage.nodes.items():
            if node.verdict is None:
                continue
            base = lineage.nearest_infected(digest)
            document = base.base_document() if base is not None else None
            if document != node.verdict.base:
                store.set_base(digest, rules, document)


def _rate_limited(exc: RegistryError) -> bool:
    """The pull budget at its reserve, or a 429 the retries could not outlast."""
    return isinstance(exc, PullBudgetExhausted) or exc.status == 429


def _label_of(target: Target) -> str:
    if target.tag:
        return f"{target.name}:{target.tag}"
    return f"{target.name}@{target.digest}"


def crawl_status(summary: CrawlSummary) -> str:
    """One line for the end of a crawl."""
    c = summary.counts
    took = "" if summary.status == "finished" else f" ({summary.status})"
    return (
        f"crawl{took}: {c.repositories} repositories, {c.tags} tags, {c.images} images judged, "
        f"{c.images_skipped} already judged, {c.layers_walked} layers read ({c.bytes_walked / 1e6:.1f} MB), "
        f"{c.layers_stored} found in the store, {c.errors} errors"
    )


__all__ = [
    "CrawlCounts",
    "CrawlObserver",
    "CrawlSummary",
    "Crawler",
    "SilentCrawlObserver",
    "crawl_status",
    "verdict_version",
]
