"""The crawl's progress on stderr: plain lines for logs, one live line on a terminal."""

from __future__ import annotations

import io

import pytest

from layerhound.crawl.worker import LayerOutcome
from layerhound.model import Failure, ImageResult, Verdict
from layerhound.report import crawl_progress
from layerhound.report.crawl_progress import CrawlProgress


def feed(progress: CrawlProgress) -> None:
    progress.planned("r.example/team/app", 2)
    progress.layer_queued(50_000_000)
    progress.layer_queued(1_000)
    progress.layer_finished(LayerOutcome("sha256:aa", None, ("dpkg",)), 50_000_000)
    progress.layer_finished(LayerOutcome("sha256:bb", None, ("dpkg",), failure=Failure("corrupt-layer", "boom")), 1_000)
    progress.image_finished(ImageResult("r.example/team/app:1", "sha256:cc", "linux/amd64", Verdict.CLEAN), False)
    progress.image_finished(ImageResult("r.example/team/app:2", "sha256:dd", None, Verdict.ERROR, error="x"), False)
    progress.image_finished(ImageResult("r.example/team/app:0", "sha256:ee", None, Verdict.CLEAN), True)
    progress.close()


def test_plain_lines_name_every_image_and_never_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crawl_progress, "PLAIN_EVERY", 0.0)  # a status line at every event
    out = io.StringIO()
    feed(CrawlProgress(out, live=False))
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert "r.example/team/app: 2 tags to look at" in lines
    assert "r.example/team/app:1 [linux/amd64]: clean" in lines
    assert "r.example/team/app:0: clean (already judged)" in lines
    assert "layer sha256:bb: boom" in lines
    last = lines[-1]
    assert last.startswith("done in 0:00:0") and "1 repos, 2 tags" in last
    assert "images 2 judged, 1 known, 1 errors" in last and "layers 2/2" in last and "50.0 MB/50.0 MB" in last
    assert any(line.startswith("progress: ") and "ETA" in line for line in lines)


def test_a_terminal_gets_one_redrawn_status_line() -> None:
    out = io.StringIO()
    feed(CrawlProgress(out, live=True))
    text = out.getvalue()
    assert "\r\x1b[2K" in text and "progress: " not in text
    assert text.rsplit("\r\x1b[2K", 1)[1].startswith("done in ")  # the live line is wiped before the summary
    assert "r.example/team/app:1 [linux/amd64]: clean\n" in text
