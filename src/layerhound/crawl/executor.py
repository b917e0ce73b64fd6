"""Where a crawl's layer tasks run: a local process pool, or a Dask cluster.

Both take the same picklable task (``worker.judge_layer_task`` and its
values) and give back futures; the coordinator polls them the same way, so
results are identical whichever runs them. A local pool uses ``spawn`` (no
forked copies of the coordinator's threads and connections); Dask workers must
have layerhound installed and reach the same registries and paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from layerhound.errors import UsageError


class TaskFuture(Protocol):
    """What both ``concurrent.futures.Future`` and ``distributed.Future`` offer."""

    def done(self) -> bool: ...

    def result(self, timeout: float | None = None) -> Any: ...

    def cancel(self) -> Any: ...


class Executor(Protocol):
    """Runs tasks somewhere; ``wait`` returns the futures that finished."""

    description: str
    workers: int

    def submit(self, function: Callable[..., Any], *args: Any) -> TaskFuture: ...

    def wait(self, futures: Iterable[TaskFuture], timeout: float | None) -> set[TaskFuture]: ...

    def close(self) -> None: ...


def default_jobs() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class LocalExecutor:
    """A pool of ``jobs`` worker processes on this machine."""

    def __init__(self, jobs: int) -> None:
        # Here, not at the top: a scan asks this module how many cores there are and may never start a pool.
        import concurrent.futures
        import multiprocessing

        self.workers = jobs
        self.description = f"{jobs} local worker process{'es' if jobs != 1 else ''}"
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn")
        )

    def submit(self, function: Callable[..., Any], *args: Any) -> TaskFuture:
        return self._pool.submit(function, *args)

    def wait(self, futures: Iterable[TaskFuture], timeout: float | None) -> set[TaskFuture]:
        import concurrent.futures

        done, _ = concurrent.futures.wait(
            list(futures), timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED  # type: ignore[arg-type]
        )
        return set(done)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Tasks on a Dask distributed cluster (``dask://HOST:PORT``, or a ``distributed.Client``)."""

    def __init__(self, address: str | None = None, client: Any = None) -> None:
        try:
            import distributed
        except ImportError as exc:  # pragma: no cover - the test extra installs it
            raise UsageError("--executor dask:// needs distributed: pip install 'layerhound[dask]'") from exc
        self._distributed = distributed
        self._own = client is None
        if client is None:
            assert address is not None
            try:
                client = distributed.Client(address, timeout="20s", set_as_default=False)  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError) as exc:
                raise UsageError(f"--executor: cannot reach the Dask scheduler at {address}: {exc}") from None
        self._client = client
        self.workers = max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
        self.description = f"Dask cluster {client.scheduler.address} ({self.workers} worker threads)"

    def submit(self, function: Callable[..., Any], *args: Any) -> TaskFuture:
        future: TaskFuture = self._client.submit(function, *args, pure=False)
        return future

    def wait(self, futures: Iterable[TaskFuture], timeout: float | None) -> set[TaskFuture]:
        pending = list(futures)
        try:
            # distributed.wait uses the *default* client; ours is not one (set_as_default=False).
            with self._client.as_current():
                done, _ = self._distributed.wait(  # type: ignore[no-untyped-call]
                    pending, timeout=timeout, return_when="FIRST_COMPLETED"
                )
        except TimeoutError:
            return {f for f in pending if f.done()}
        return set(done)

    def close(self) -> None:
        if self._own:
            self._client.close()


def make_executor(spec: str, jobs: int | None) -> Executor:
    """``local`` (a pool of ``jobs`` processes) or ``dask://HOST:PORT``."""
    if spec == "local":
        return LocalExecutor(jobs or default_jobs())
    if spec.startswith("dask://"):
        hostport = spec.removeprefix("dask://").rstrip("/")
        if not hostport:
            raise UsageError("--executor dask://HOST:PORT needs the scheduler's address")
        return DaskExecutor(f"tcp://{hostport}")
    raise UsageError(f"--executor: {spec!r} is neither 'local' nor dask://HOST:PORT")
