"""The layers of one image walked at once: some in worker processes, one at a time here.

Why: an image of several large layers is otherwise one core's work (the
inflating thread aside). Workers run the crawl's own unit of work
(``crawl.worker.judge_layer_task`` on a ``LayerRef``: the blob reopened,
streamed and verified there), so a layer's result is the same wherever it was
walked; this process walks the rest, largest first, and everything that must
see every layer (the cache, the merged view, the verdict) stays here.

Workers are started on first use (``spawn``: each imports layerhound, which this
process's own first layer overlaps) and only for an image with at least two
layers of ``MIN_LAYER_BYTES`` (compressed) to walk: below that, starting a
process costs more than it saves. A worker that dies, or a pool that breaks,
costs time, never a result: its layer is walked here instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerhound.errors import ScanError
from layerhound.layers.layer import Layer
from layerhound.layers.walk import walk_layer
from layerhound.model import LayerResult
from layerhound.scan import LayerFailed, ScanObserver, internal_error, kept, missing_detectors

if TYPE_CHECKING:
    from layerhound.crawl.executor import LocalExecutor, TaskFuture
    from layerhound.crawl.worker import LayerOutcome
    from layerhound.detectors.base import Detector
    from layerhound.registry.settings import RegistrySettings
    from layerhound.store.cache import LayerCache
    from layerhound.store.layer_rows import StoredLayer

MIN_LAYER_BYTES = 8 << 20
"""A layer this large (compressed) is worth a worker; an image needs two of them."""


@dataclass(eq=False)
class _Job:
    index: int
    layer: Layer
    stored: StoredLayer | None
    missing: list[Detector]
    here: bool = False
    """A worker lost it once: this process walks it (a task that cannot travel would fail again)."""


class LayerPool:
    """``workers`` processes besides this one, shared by every image of a command."""

    def __init__(self, workers: int, settings: RegistrySettings, min_layer_bytes: int = MIN_LAYER_BYTES) -> None:
        self.workers = workers
        self.settings = settings
        self.min_layer_bytes = min_layer_bytes
        self._executor: LocalExecutor | None = None
        self._broken = False
        self.sent = 0
        """Layers handed to a worker so far."""
        self.lost = 0
        """Of those, layers whose worker died (walked here after all)."""

    def worth_it(self, layers: Sequence[Layer], known: Sequence[StoredLayer | None],
                 detectors: Sequence[Detector]) -> bool:
        """Whether two or more of ``layers`` must be walked, are big enough, and can be reopened by a worker."""
        if self.workers < 1 or self._broken:
            return False
        return sum(1 for layer, stored in zip(layers, known, strict=True)
                   if self._large_and_reopenable(layer) and (stored is None or stored.missing(detectors))) >= 2

    def judge(
        self,
        layers: Sequence[Layer],
        known: Sequence[StoredLayer | None],
        detectors: Sequence[Detector],
        cache: LayerCache | None,
        observer: ScanObserver,
    ) -> tuple[list[LayerResult], ScanError | None]:
        """Every layer's result, in order, as ``scan.judge_layer`` gives it one at a time
        (the observer hears of layers as they start and finish, in any order).

        Returns the results before the first layer (in image order) that failed,
        and that failure (None when every layer was judged). The others are
        walked all the same: their results are in the cache for the next scan.
        """
        results: dict[int, LayerResult] = {}
        failures: dict[int, ScanError] = {}
        queue: deque[_Job] = deque()
        for index, (layer, stored) in enumerate(zip(layers, known, strict=True)):
            missing = missing_detectors(detectors, stored)
            if stored is not None and not missing:
                observer.layer_started(index, layer)
                results[index] = stored.result(layer, detectors)
                observer.layer_finished(index, results[index])
            else:
                queue.append(_Job(index, layer, stored, missing))
        queue = deque(sorted(queue, key=lambda job: -job.layer.size))
        inflight: dict[TaskFuture, _Job] = {}

        def finished(job: _Job, fresh: LayerResult) -> None:
            results[job.index] = kept(job.layer, detectors, job.stored, cache, job.missing, fresh)
            observer.layer_finished(job.index, results[job.index])

        try:
            while queue or inflight:
                self._send(queue, inflight, observer)
                for job, outcome in self._collect(inflight, block=not queue):
                    if outcome is None:  # the worker was lost: walked here after all
                        job.here = True
                        queue.appendleft(job)
                    elif outcome.failure is not None or outcome.result is None:
                        failures[job.index] = LayerFailed(outcome.failure) if outcome.failure else ScanError(
                            f"layer {job.layer.digest}: no result")
                    else:
                        finished(job, outcome.result)
                if queue:
                    job = queue.popleft()
                    observer.layer_started(job.index, job.layer)
                    try:
                        finished(job, walk_layer(job.layer, job.missing))
                    except ScanError as exc:
                        failures[job.index] = exc
                    except MemoryError:
                        raise
                    except Exception as exc:  # a bug of ours on this layer: its image fails, as a worker's would
                        failures[job.index] = internal_error(f"layer {job.layer.digest}", exc)
        finally:
            for future in inflight:
                future.cancel()
        done: list[LayerResult] = []
        for index in range(len(layers)):
            if index in failures:
                return done, failures[index]
            done.append(results[index])
        return done, None

    def _send(self, queue: deque[_Job], inflight: dict[TaskFuture, _Job], observer: ScanObserver) -> None:
        """Give idle workers the largest layers they can reopen; this process walks the rest, largest first.

        (Keeping the largest here instead, as a worker starts up, measured slower: 1.6 s against 1.3 s
        on the benchmark's three-layer image.)"""
        from layerhound.crawl.worker import judge_layer_task, user_rules_of

        while not self._broken and len(inflight) < self.workers:
            job = next((j for j in queue if self._sendable(j)), None)
            if job is None:
                return
            try:
                future = self.executor().submit(judge_layer_task, job.layer.ref, self.settings,
                                                tuple(d.name for d in job.missing), user_rules_of(job.missing))
            except Exception:  # a broken or shut pool: this process walks everything left
                self._broken = True
                return
            queue.remove(job)
            inflight[future] = job
            self.sent += 1
            observer.layer_started(job.index, job.layer)

    def _large_and_reopenable(self, layer: Layer) -> bool:
        return layer.ref is not None and layer.size >= self.min_layer_bytes

    def _sendable(self, job: _Job) -> bool:
        from layerhound.crawl.worker import detectors_named, user_rules_of

        if job.here or not self._large_and_reopenable(job.layer):
            return False
        # A worker runs the built-in detectors of these names and the user's rules: only those can be sent.
        return detectors_named([d.name for d in job.missing], user_rules_of(job.missing)) == job.missing

    def _collect(self, inflight: dict[TaskFuture, _Job], block: bool) -> list[tuple[_Job, LayerOutcome | None]]:
        from concurrent.futures import BrokenExecutor  # here: a scan that starts no pool never loads it

        if not inflight:
            return []
        if block:
            self.executor().wait(inflight, timeout=None)
        out: list[tuple[_Job, LayerOutcome | None]] = []
        for future in [f for f in inflight if f.done()]:
            job = inflight.pop(future)
            try:
                out.append((job, future.result()))
            except MemoryError:
                raise
            except BrokenExecutor:  # a worker died (killed, out of memory): the pool is not used again
                self._broken = True
                self.lost += 1
                out.append((job, None))
            except Exception:  # this task alone failed to travel (its result, its session): walked here
                self.lost += 1
                out.append((job, None))
        return out

    def executor(self) -> LocalExecutor:
        """The worker processes, started on first use."""
        if self._executor is None:
            from layerhound.crawl.executor import LocalExecutor

            self._executor = LocalExecutor(self.workers)
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None


def default_workers(jobs: int | None) -> int:
    """Workers besides this process for ``--jobs`` (None: one process per core)."""
    from layerhound.crawl.executor import default_jobs

    return max(0, (jobs if jobs is not None else default_jobs()) - 1)
