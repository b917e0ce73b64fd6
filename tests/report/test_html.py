"""The HTML report, opened in a real browser (Debian's headless Chromium)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from layerhound.cli import main
from tests.support.browser import dump_dom, screenshot
from tests.support.imagewriter import ImageSpec, Layer, file, symlink, write_oci

LIB = "/usr/lib/x86_64-linux-gnu"
HOSTILE = "v1<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts"


@pytest.fixture()
def report(tmp_path: Path, implant_so: bytes, capsys: pytest.CaptureFixture[str]) -> Path:
    layout = tmp_path / "layout"
    implant = Layer.files(
        {f"{LIB}/liblzma.so.5.6.1": file(implant_so), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")}
    )
    write_oci(layout, ImageSpec([implant], created="2024-03-01T00:00:00Z"), tag="old")
    write_oci(layout, ImageSpec([Layer.files({"/etc/hostname": "x\n"})], created="2024-04-20T00:00:00Z"), tag="new")
    write_oci(layout, ImageSpec([implant], created="2024-03-05T00:00:00Z"), tag=HOSTILE)
    out = tmp_path / "report.html"
    refs = [f"oci:{layout}:old", f"oci:{layout}:new", f"oci:{layout}:{HOSTILE}"]
    assert main(["scan", "--no-progress", "--no-cache", "--format", "html", "-o", str(out), *refs]) == 1
    capsys.readouterr()
    return out


def test_the_page_renders_in_chromium_with_no_error_and_no_request(report: Path) -> None:
    dom = dump_dom(report)
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None
    assert 'data-ready="1"' in body.group(0), body.group(0)  # the page's script ran to its end
    assert 'data-errors=""' in body.group(0) and "data-blocked" not in body.group(0)
    assert "<title>layerhound report: CVE-2024-3094</title>" in dom  # not 'pwned': the tag's script never ran
    assert dom.count("<script") == 1 and "<img" not in dom  # the hostile tag is text
    assert "&lt;script&gt;document.title" in dom
    assert 'class="timeline"' in dom and dom.count("<circle") == 3
    assert "backdoored-dormant: 2" in dom and "clean: 1" in dom
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = screenshot(report, ARTIFACTS / "report.png")
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(report, ARTIFACTS / "report.html")


def test_the_page_is_self_contained(report: Path) -> None:
    text = report.read_text()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing to fetch: no CDN, no remote font
