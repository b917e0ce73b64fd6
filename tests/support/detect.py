"""Ask one detector about one file, the way the layer engine does."""

from __future__ import annotations

from layerhound.detectors.base import HEAD_SIZE, Detector
from layerhound.model import Entry, EntryType, Fact, Finding


def run_detector(detector: Detector, path: str, data: bytes) -> tuple[list[Finding], list[Fact]]:
    """``wants`` on the head (which must say yes), then ``inspect``; findings and facts apart."""
    entry = Entry(path, EntryType.FILE, size=len(data))
    assert detector.wants(entry, data[:HEAD_SIZE])
    results = list(detector.inspect(entry, data))
    findings = [r for r in results if isinstance(r, Finding)]
    facts = [r for r in results if isinstance(r, Fact)]
    assert len(findings) + len(facts) == len(results)
    return findings, facts
