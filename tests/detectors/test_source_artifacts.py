"""The source-artifact detector, on synthetic files holding only published marker lines.

The real backdoor script is never written here: the "doctored" files below
carry the published indicator lines padded with harmless text.
"""

from __future__ import annotations

import pytest

from layerhound.detectors.base import HEAD_SIZE
from layerhound.detectors.source_artifacts import SourceArtifactDetector
from layerhound.model import Entry, EntryType, Finding, Indicates, Kind

DETECTOR = SourceArtifactDetector()
M4_PATH = "/usr/src/xz-5.6.1/m4/build-to-host.m4"
CONFIGURE_PATH = "/usr/src/xz-5.6.1/configure"

SERIAL_30 = "# build-to-host.m4 serial 30"
CONFIGMAKE = 'gl_am_configmake=`echo "synthetic marker line"`'
PATH_MAP = "gl_path_map='tr \"\\t \\-_\" \" \\t_\\-\"'"
CONFIG_GT = "  [eval $gl_config_gt | $SHELL 2>/dev/null], [synthetic])"

LEGIT_M4 = """\
# build-to-host.m4 serial 3
dnl Written for layerhound's tests; modelled on the shape of a gnulib macro file.
dnl It converts a directory name from build to host syntax and nothing else.

AC_DEFUN([gl_BUILD_TO_HOST],
[
  AC_REQUIRE([AC_CANONICAL_BUILD])
  gl_final_[$1]="$[$1]"
  gl_[$1]_value="$gl_final_[$1]"
  AC_SUBST([$1_c])
])
"""


def m4_text(*lines: str) -> str:
    return "\n".join(["dnl synthetic test file", *lines, "dnl end"]) + "\n"


def configure_text(*lines: str) -> str:
    return "\n".join(["#! /bin/sh", "# Guess values for system-dependent variables.", *lines, "exit 0"]) + "\n"


def run(path: str, text: str) -> list[Finding]:
    data = text.encode()
    entry = Entry(path, EntryType.FILE, size=len(data))
    assert DETECTOR.wants(entry, data[:HEAD_SIZE])
    return list(DETECTOR.inspect(entry, data))


def test_doctored_m4_with_all_markers() -> None:
    [finding] = run(M4_PATH, m4_text(SERIAL_30, CONFIGMAKE, PATH_MAP, CONFIG_GT))
    assert finding.rule == "xz-trigger-m4"
    assert finding.kind is Kind.SOURCE
    assert finding.indicates is Indicates.SOURCE
    assert finding.path == M4_PATH
    assert finding.evidence == {
        "markers": ["gl_am_configmake", "gl_path_map", "gl_config_gt_eval"],
        "serial_30": True,
    }


@pytest.mark.parametrize(
    ("lines", "markers"),
    [
        ((PATH_MAP, CONFIGMAKE), ["gl_am_configmake", "gl_path_map"]),
        ((PATH_MAP, CONFIG_GT), ["gl_path_map", "gl_config_gt_eval"]),
    ],
)
def test_m4_path_map_plus_one_other_line_is_enough(lines: tuple[str, ...], markers: list[str]) -> None:
    [finding] = run(M4_PATH, m4_text(*lines))
    assert finding.evidence == {"markers": markers, "serial_30": False}


@pytest.mark.parametrize(
    "lines",
    [
        (SERIAL_30,),
        (SERIAL_30, PATH_MAP),
        (SERIAL_30, CONFIGMAKE, CONFIG_GT),
        (PATH_MAP,),
    ],
)
def test_m4_without_path_map_and_another_trigger_line_does_not_match(lines: tuple[str, ...]) -> None:
    assert run(M4_PATH, m4_text(*lines)) == []


def test_serial_300_is_not_serial_30() -> None:
    [finding] = run(M4_PATH, m4_text("# build-to-host.m4 serial 300", PATH_MAP, CONFIGMAKE))
    assert finding.evidence["serial_30"] is False


def test_legitimate_m4_does_not_match() -> None:
    assert run("/usr/share/aclocal/build-to-host.m4", LEGIT_M4) == []


def test_m4_matched_at_any_path() -> None:
    [finding] = run("/opt/project/aclocal/build-to-host.m4", m4_text(PATH_MAP, CONFIG_GT))
    assert finding.rule == "xz-trigger-m4"


def test_doctored_configure() -> None:
    [finding] = run(CONFIGURE_PATH, configure_text(CONFIGMAKE, "HAVE_X=1", PATH_MAP, CONFIG_GT))
    assert finding.rule == "xz-trigger-configure"
    assert finding.kind is Kind.SOURCE
    assert finding.indicates is Indicates.SOURCE
    assert finding.evidence == {"markers": ["gl_am_configmake", "gl_path_map", "gl_config_gt_eval"]}


def test_configure_with_only_path_map_does_not_match() -> None:
    assert run(CONFIGURE_PATH, configure_text(PATH_MAP)) == []


def test_configure_without_markers_does_not_match() -> None:
    assert run(CONFIGURE_PATH, configure_text("ac_cv_prog_cc=gcc", "gl_final_localedir=/usr")) == []


def test_altered_path_map_is_not_the_marker() -> None:
    altered = "gl_path_map='tr \"\\t \\-_\" \" \\t_-\"'"  # one backslash fewer
    assert run(CONFIGURE_PATH, configure_text(altered, CONFIGMAKE, CONFIG_GT)) == []


@pytest.mark.parametrize(
    ("path", "head", "wanted"),
    [
        ("/src/m4/build-to-host.m4", b"# build-to-host.m4 serial 3\n", True),
        ("/src/configure", b"#! /bin/sh\n", True),
        ("/src/configure", b"\x7fELF\x02\x01\x01", False),
        ("/src/configure", b"binary\x00data", False),
        ("/src/configure.ac", b"AC_INIT([x])\n", False),
        ("/src/m4/other.m4", b"dnl\n", False),
        ("/src/build-to-host.m4.orig", b"dnl\n", False),
    ],
)
def test_wants(path: str, head: bytes, wanted: bool) -> None:
    assert DETECTOR.wants(Entry(path, EntryType.FILE, size=100), head) is wanted
