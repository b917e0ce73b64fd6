"""A progress display for long scans, drawn on stderr only when it is a terminal."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from layerhound.layers.layer import Layer
from layerhound.model import ImageResult, LayerResult


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class ProgressObserver:
    """Shows the image and layer being read; disappears when the scan ends."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task("starting", total=None)

    def __enter__(self) -> ProgressObserver:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def image_started(self, ref: str, platform: str | None, layer_count: int) -> None:
        label = ref + (f" [{platform}]" if platform else "")
        self.progress.reset(self.task, total=layer_count, description=label)

    def layer_started(self, index: int, layer: Layer) -> None:
        digest = (layer.digest or "filesystem")[:19]
        self.progress.update(self.task, description=f"layer {digest} ({_size(layer.size)})")

    def layer_finished(self, index: int, result: LayerResult) -> None:
        self.progress.advance(self.task)

    def image_finished(self, result: ImageResult) -> None:
        label = result.ref + (f" [{result.platform}]" if result.platform else "")
        self.progress.console.print(
            f"{label}: {result.verdict.value}", markup=False, highlight=False, soft_wrap=True
        )
