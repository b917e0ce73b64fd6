"""Which xz builds each distribution shipped from the backdoored releases.

Why one table: every package database (dpkg, rpm, apk, pacman) answers the
same two questions about an installed xz package, and the answers must not
drift apart between detectors:

* ``affected`` -- was this build made from the attacker's 5.6.0/5.6.1 release
  tarballs (Debian: from the 5.5.1alpha upload on)? That is all a version can
  tell.
* ``injected`` -- did that distribution's build actually splice the implant
  into liblzma? The trigger in ``build-to-host.m4`` fired only when building on
  x86-64 GNU/Linux with gcc and GNU ld *and* inside a Debian package build
  (``debian/rules``) or an RPM build (``RPM_ARCH=x86_64``). So Debian, Fedora
  and openSUSE x86-64 builds were injected; Alpine (musl), Arch (not a
  deb/rpm build; 5.6.1-2 was rebuilt from git) and Homebrew were not, and no
  non-x86-64 build was. An affected version with clean bytes on those
  distributions is ``affected-version-not-injected``, never backdoored.
  ``None`` means nobody knows (an rpm from an unknown builder).

Versions are compared with each package manager's own ordering, implemented
here from the package managers' sources: string comparison gets the fixes
wrong (Debian's ``5.6.1+really5.4.5-1`` sorts *above* ``5.6.1-1``, openSUSE's
``5.6.1.revertto5.4`` above ``5.6.1``, Alpine's ``5.6.1-r2`` above
``5.6.1-r1``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from layerhound.model import Fact, Finding, Indicates, Kind


class Ecosystem(str, enum.Enum):
    """A package database format; each has its own version ordering."""

    DPKG = "dpkg"
    RPM = "rpm"
    APK = "apk"
    PACMAN = "pacman"
    HOMEBREW = "homebrew"


# --------------------------------------------------------------------------
# Version orderings
# --------------------------------------------------------------------------


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _is_alpha(c: str) -> bool:
    return "a" <= c <= "z" or "A" <= c <= "Z"


def _is_alnum(c: str) -> bool:
    return _is_digit(c) or _is_alpha(c)


def rpmvercmp(a: str, b: str) -> int:
    """rpm's ``rpmvercmp``: -1, 0 or 1, including ``~`` and ``^`` handling.

    A line-by-line port of rpmio/rpmvercmp.c (rpm 4.x): the strings are cut
    into alternating runs of ASCII digits and letters; separators only split;
    ``~`` sorts before anything (even the end), ``^`` after the end but
    before anything else; digits beat letters; numbers compare by value; the
    string with segments left over wins.
    """
    if a == b:
        return 0
    i = j = 0
    la, lb = len(a), len(b)
    while i < la or j < lb:
        while i < la and not _is_alnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < lb and not _is_alnum(b[j]) and b[j] not in "~^":
            j += 1
        ca = a[i] if i < la else ""
        cb = b[j] if j < lb else ""
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i += 1
            j += 1
            continue
        if ca == "^" or cb == "^":
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i += 1
            j += 1
            continue
        if not (ca and cb):
            break
        si, sj = i, j
        if _is_digit(ca):
            while i < la and _is_digit(a[i]):
                i += 1
            while j < lb and _is_digit(b[j]):
                j += 1
            isnum = True
        else:
            while i < la and _is_alpha(a[i]):
                i += 1
            while j < lb and _is_alpha(b[j]):
                j += 1
            isnum = False
        one, two = a[si:i], b[sj:j]
        if not one:
            return -1  # cannot happen: ca is alphanumeric (rpm says "arbitrary")
        if not two:
            return 1 if isnum else -1
        if isnum:
            one, two = one.lstrip("0"), two.lstrip("0")
            if len(one) != len(two):
                return 1 if len(one) > len(two) else -1
        if one != two:
            return -1 if one < two else 1
    if i >= la and j >= lb:
        return 0
    return -1 if i >= la else 1


def split_evr(evr: str) -> tuple[int, str, str | None]:
    """``[epoch:]version[-release]`` -> (epoch, version, release) as rpm reads it."""
    epoch = 0
    head, sep, rest = evr.partition(":")
    if sep and head.isdigit() and head.isascii():
        epoch = int(head)
        evr = rest
    version, dash, release = evr.rpartition("-")
    if not dash:
        return epoch, evr, None
    return epoch, version, release


def rpm_compare(a: str, b: str) -> int:
    """Compare two rpm ``[epoch:]version[-release]`` strings like rpm does.

    A missing epoch is 0; the release is compared only when both have one
    (rpm's dependency-range semantics).
    """
    ea, va, ra = split_evr(a)
    eb, vb, rb = split_evr(b)
    if ea != eb:
        return -1 if ea < eb else 1
    rc = rpmvercmp(va, vb)
    if rc or ra is None or rb is None:
        return rc
    return rpmvercmp(ra, rb)


def _alpm_rpmvercmp(a: str, b: str) -> int:
    """pacman's copy of rpmvercmp (libalpm/version.c, from rpm 4.8.1).

    Differs from rpm's: no ``~``/``^``, and a different number of separator
    characters decides on its own; a left-over letter run loses to the end.
    """
    if a == b:
        return 0
    la, lb = len(a), len(b)
    i = j = 0  # "one", "two"
    p1 = p2 = 0  # "ptr1", "ptr2": end of the previous segment
    while i < la and j < lb:
        while i < la and not _is_alnum(a[i]):
            i += 1
        while j < lb and not _is_alnum(b[j]):
            j += 1
        if not (i < la and j < lb):
            break
        if (i - p1) != (j - p2):
            return -1 if (i - p1) < (j - p2) else 1
        p1, p2 = i, j
        if _is_digit(a[p1]):
            while p1 < la and _is_digit(a[p1]):
                p1 += 1
            while p2 < lb and _is_digit(b[p2]):
                p2 += 1
            isnum = True
        else:
            while p1 < la and _is_alpha(a[p1]):
                p1 += 1
            while p2 < lb and _is_alpha(b[p2]):
                p2 += 1
            isnum = False
        one, two = a[i:p1], b[j:p2]
        if not one:
            return -1
        if not two:
            return 1 if isnum else -1
        if isnum:
            one, two = one.lstrip("0"), two.lstrip("0")
            if len(one) != len(two):
                return 1 if len(one) > len(two) else -1
        if one != two:
            return -1 if one < two else 1
        i, j = p1, p2
    if i >= la and j >= lb:
        return 0
    if (i >= la and not (j < lb and _is_alpha(b[j]))) or (i < la and _is_alpha(a[i])):
        return -1
    return 1


def _alpm_parse_evr(evr: str) -> tuple[str, str, str | None]:
    """libalpm's parseEVR: epoch defaults to "0", release may be absent."""
    k = 0
    while k < len(evr) and _is_digit(evr[k]):
        k += 1
    rest = evr[k:]
    dash = rest.rfind("-")
    if rest.startswith(":"):
        epoch = evr[:k] or "0"
        start = k + 1
    else:
        epoch = "0"
        start = 0
    if dash >= 0:
        return epoch, evr[start : k + dash], rest[dash + 1 :]
    return epoch, evr[start:], None


def pacman_vercmp(a: str, b: str) -> int:
    """pacman's ``alpm_pkg_vercmp`` (what ``vercmp`` prints): -1, 0 or 1."""
    if a == b:
        return 0
    ea, va, ra = _alpm_parse_evr(a)
    eb, vb, rb = _alpm_parse_evr(b)
    rc = _alpm_rpmvercmp(ea, eb)
    if rc == 0:
        rc = _alpm_rpmvercmp(va, vb)
        if rc == 0 and ra is not None and rb is not None:
            rc = _alpm_rpmvercmp(ra, rb)
    return rc


# apk-tools src/version.c, token types in their numeric order (the order matters).
_T_INVALID = -1
_T_DIGIT_OR_ZERO = 0
_T_DIGIT = 1
_T_LETTER = 2
_T_SUFFIX = 3
_T_SUFFIX_NO = 4
_T_REVISION_NO = 5
_T_END = 6
_APK_PRE_SUFFIXES = ("alpha", "beta", "pre", "rc")
_APK_POST_SUFFIXES = ("cvs", "svn", "git", "hg", "p")


def _apk_next_token(t: int, s: str, pos: int) -> tuple[int, int]:
    n = _T_INVALID
    if pos >= len(s) or s[pos] == "\0":
        n = _T_END
    elif t in (_T_DIGIT, _T_DIGIT_OR_ZERO) and "a" <= s[pos] <= "z":
        n = _T_LETTER
    elif t == _T_LETTER and _is_digit(s[pos]):
        n = _T_DIGIT
    elif t == _T_SUFFIX and _is_digit(s[pos]):
        n = _T_SUFFIX_NO
    else:
        c = s[pos]
        if c == ".":
            n = _T_DIGIT_OR_ZERO
        elif c == "_":
            n = _T_SUFFIX
        elif c == "-" and len(s) - pos > 1 and s[pos + 1] == "r":
            n = _T_REVISION_NO
            pos += 1
        pos += 1
    if n < t and not (
        (n == _T_DIGIT_OR_ZERO and t == _T_DIGIT)
        or (n == _T_SUFFIX and t == _T_SUFFIX_NO)
        or (n == _T_DIGIT and t == _T_LETTER)
    ):
        n = _T_INVALID
    return n, pos


def _apk_get_token(t: int, s: str, pos: int) -> tuple[int, int, int]:
    """One token's value; returns (value, next token type, new position)."""
    remaining = len(s) - pos
    if remaining <= 0:
        return 0, _T_END, pos
    v = 0
    i = 0
    nt = _T_INVALID
    if t == _T_DIGIT_OR_ZERO and s[pos] == "0":
        # Leading zeros sort below any number: 1.01 < 1.1.
        while i < remaining and s[pos + i] == "0":
            i += 1
        nt = _T_DIGIT
        v = -i
    elif t in (_T_DIGIT_OR_ZERO, _T_DIGIT, _T_SUFFIX_NO, _T_REVISION_NO):
        while i < remaining and _is_digit(s[pos + i]):
            v = v * 10 + ord(s[pos + i]) - 48
            i += 1
    elif t == _T_LETTER:
        v = ord(s[pos])
        i = 1
    elif t == _T_SUFFIX:
        for index, suffix in enumerate(_APK_PRE_SUFFIXES):
            if s.startswith(suffix, pos):
                v, i = index - len(_APK_PRE_SUFFIXES), len(suffix)
                break
        else:
            for index, suffix in enumerate(_APK_POST_SUFFIXES):
                if s.startswith(suffix, pos):
                    v, i = index, len(suffix)
                    break
            else:
                return -1, _T_INVALID, pos
    else:
        return -1, _T_INVALID, pos
    pos += i
    if pos >= len(s):
        t = _T_END
    elif nt != _T_INVALID:
        t = nt
    else:
        t, pos = _apk_next_token(t, s, pos)
    return v, t, pos


def apk_version_valid(version: str) -> bool:
    """apk's ``apk_version_validate``."""
    t, pos = _T_DIGIT, 0
    while t not in (_T_END, _T_INVALID):
        _, t, pos = _apk_get_token(t, version, pos)
    return t == _T_END


def apk_compare(a: str, b: str) -> int:
    """apk-tools' version comparison (Gentoo style, ``-rN`` revisions): -1, 0, 1.

    A port of apk-tools 2.x src/version.c, quirks included (a component that
    is exactly ``0`` and ends one side sorts below a suffix on the other).
    """
    at = bt = _T_DIGIT
    av = bv = 0
    pa = pb = 0
    while at == bt and at not in (_T_END, _T_INVALID) and av == bv:
        av, at, pa = _apk_get_token(at, a, pa)
        bv, bt, pb = _apk_get_token(bt, b, pb)
    if av < bv:
        return -1
    if av > bv:
        return 1
    if at == bt:
        return 0
    # Equal so far: the longer one is newer unless what follows is a
    # pre-release suffix (_alpha, _beta, _pre, _rc).
    if at == _T_SUFFIX and _apk_get_token(at, a, pa)[0] < 0:
        return -1
    if bt == _T_SUFFIX and _apk_get_token(bt, b, pb)[0] < 0:
        return 1
    if at > bt:
        return -1
    if bt > at:
        return 1
    return 0


def dpkg_compare(a: str, b: str) -> int:
    """dpkg's ordering (python-debian); raises ValueError on an invalid version."""
    from debian.debian_support import Version as DebianVersion  # loaded when first compared, not at start-up

    va, vb = DebianVersion(a), DebianVersion(b)
    return -1 if va < vb else (1 if va > vb else 0)


_HOMEBREW_REVISION = re.compile(r"_\d+$")


def _compare(ecosystem: Ecosystem, a: str, b: str) -> int:
    """The ecosystem's ordering; ValueError for a version it would reject."""
    if ecosystem is Ecosystem.DPKG:
        return dpkg_compare(a, b)
    if ecosystem is Ecosystem.APK:
        for version in (a, b):
            if not apk_version_valid(version):
                raise ValueError(f"invalid apk version {version!r}")
        return apk_compare(a, b)
    if ecosystem is Ecosystem.PACMAN:
        return pacman_vercmp(a, b)
    if ecosystem is Ecosystem.HOMEBREW:
        # "5.6.1_1" is a rebuild (bottle revision) of the same upstream 5.6.1.
        a, b = _HOMEBREW_REVISION.sub("", a), _HOMEBREW_REVISION.sub("", b)
    return rpmvercmp(a, b)  # rpm rows bound the VERSION tag, an upstream version


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AffectedBuilds:
    """One distribution's xz builds from the backdoored releases.

    ``first``..``last`` bound the affected versions in the ecosystem's order
    (``first`` inclusive). ``packages`` are the binary names of that
    distribution's xz, which recognise xz where no source name does. For rpm
    rows the bounds apply to the VERSION tag alone, and ``dist_tags``, if set,
    limits the row to releases carrying one of those dist tags
    (``5.6.0-2.fc40``).
    """

    distro: str
    ecosystem: Ecosystem
    packages: frozenset[str]
    first: str
    last: str
    last_inclusive: bool
    injected: bool | None
    fixed_in: str
    why: str
    dist_tags: tuple[str, ...] = ()
    catch_all: bool = False
    """Applies to builds of any distribution this table does not name."""

    def contains(self, version: str) -> bool:
        """Whether ``version`` lies in this row's range (ValueError if unparsable)."""
        if _compare(self.ecosystem, version, self.first) < 0:
            return False
        rc = _compare(self.ecosystem, version, self.last)
        return rc < 0 or (rc == 0 and self.last_inclusive)

    def to_json(self) -> dict[str, Any]:
        return {
            "distro": self.distro,
            "ecosystem": self.ecosystem.value,
            "packages": sorted(self.packages),
            "first": self.first,
            "last": self.last,
            "last_inclusive": self.last_inclusive,
            "dist_tags": list(self.dist_tags),
            "catch_all": self.catch_all,
            "injected": self.injected,
            "fixed_in": self.fixed_in,
        }


DEBIAN_SOURCE = "xz-utils"
DEBIAN_PACKAGES = frozenset({"xz-utils", "liblzma5", "liblzma-dev", "liblzma-doc", "xzdec", "lzma"})
FEDORA_PACKAGES = frozenset({"xz", "xz-libs", "xz-devel", "xz-static", "xz-lzma-compat"})
SUSE_PACKAGES = frozenset(
    {"xz", "liblzma5", "liblzma5-32bit", "xz-devel", "xz-devel-32bit", "xz-static-devel", "xz-lang"}
)
ALPINE_ORIGIN = "xz"
ALPINE_PACKAGES = frozenset({"xz", "xz-libs", "xz-dev", "xz-doc", "xz-static"})
ARCH_BASE = "xz"
ARCH_PACKAGES = frozenset({"xz", "lib32-xz"})

TABLE: tuple[AffectedBuilds, ...] = (
    AffectedBuilds(
        distro="debian",
        ecosystem=Ecosystem.DPKG,
        packages=DEBIAN_PACKAGES,
        first="5.5.1alpha-0.1",
        last="5.6.1-1",
        last_inclusive=True,
        injected=True,
        fixed_in="5.6.1+really5.4.5-1",
        why="Debian (unstable, testing, experimental; also Kali rolling and Ubuntu "
        "noble-proposed, which took Debian's uploads) built amd64 from the backdoored "
        "tarballs inside debian/rules: the trigger fired",
    ),
    AffectedBuilds(
        distro="fedora",
        ecosystem=Ecosystem.RPM,
        packages=FEDORA_PACKAGES,
        first="5.6.0",
        last="5.6.1",
        last_inclusive=True,
        dist_tags=("fc40", "fc41"),
        injected=True,
        fixed_in="5.4.6 (reverted)",
        why="Fedora 40 (5.6.0-1.fc40, 5.6.0-2.fc40) and Fedora 41/rawhide (5.6.0, 5.6.1) "
        "built x86_64 RPMs from the backdoored tarballs: the trigger fired",
    ),
    AffectedBuilds(
        distro="opensuse",
        ecosystem=Ecosystem.RPM,
        packages=SUSE_PACKAGES,
        first="5.6.0",
        last="5.6.1",
        last_inclusive=True,
        injected=True,
        fixed_in="5.6.1.revertto5.4",
        why="openSUSE Tumbleweed/MicroOS built x86_64 RPMs of 5.6.0 and 5.6.1 from the "
        "backdoored tarballs: the trigger fired",
    ),
    AffectedBuilds(
        distro="alpine",
        ecosystem=Ecosystem.APK,
        packages=ALPINE_PACKAGES,
        first="5.6.0-r0",
        last="5.6.1-r2",
        last_inclusive=False,
        injected=False,
        fixed_in="5.6.1-r2",
        why="Alpine edge shipped 5.6.0/5.6.1 from the backdoored tarballs, but builds "
        "against musl outside any deb/rpm build: the trigger never fired",
    ),
    AffectedBuilds(
        distro="arch",
        ecosystem=Ecosystem.PACMAN,
        packages=ARCH_PACKAGES,
        first="5.6.0-1",
        last="5.6.1-1",
        last_inclusive=True,
        injected=False,
        fixed_in="5.6.1-2",
        why="Arch Linux built 5.6.0-1 and 5.6.1-1 from the backdoored tarballs, but "
        "outside any deb/rpm build: the trigger never fired (5.6.1-2 was rebuilt from git)",
    ),
    AffectedBuilds(
        distro="homebrew",
        ecosystem=Ecosystem.HOMEBREW,
        packages=frozenset({"xz"}),
        first="5.6.0",
        last="5.6.1",
        last_inclusive=True,
        injected=False,
        fixed_in="5.4.6 (reverted)",
        why="Homebrew bottled 5.6.0/5.6.1, but outside any deb/rpm build: the trigger "
        "never fired",
    ),
    AffectedBuilds(
        distro="rpm-unknown",
        ecosystem=Ecosystem.RPM,
        packages=FEDORA_PACKAGES | SUSE_PACKAGES,
        first="5.6.0",
        last="5.6.1",
        last_inclusive=True,
        injected=None,
        catch_all=True,
        fixed_in="any other upstream version",
        why="an rpm of 5.6.0/5.6.1 from a builder this table does not know: built from "
        "the backdoored tarballs, and an x86_64 rpmbuild would have fired the trigger",
    ),
)
"""Every known affected build, distribution rows before the catch-all row."""

X86_64_ARCHES = frozenset({"x86_64", "amd64"})
"""Architectures on which the trigger could fire."""
ARCH_INDEPENDENT = frozenset({"", "noarch", "all", "any"})
"""Architecture values that say nothing about the build host."""

DISTRO_ALIASES = {"ubuntu": "debian", "kali": "debian", "suse": "opensuse", "rawhide": "fedora"}
"""Distributions that took another's builds of xz."""

_FEDORA_TAG = re.compile(r"\.(fc\d+)(?=$|[._+~^])")
_SOURCE_RPM = re.compile(r"^xz-\d")


@dataclass(frozen=True, slots=True)
class VersionClaim:
    """What a package database's version says about one installed xz package."""

    affected: bool
    """Built from the backdoored releases (says nothing about the bytes)."""
    injected: bool | None
    """Whether that distribution's build of it was injected; None if unknown
    or not affected."""
    reason: str
    distro: str | None = None


def fedora_dist_tag(release: str) -> str | None:
    """``"fc40"`` from ``"2.fc40"``; None for releases without a Fedora dist tag."""
    match = _FEDORA_TAG.search(release)
    return match.group(1) if match else None


def guess_rpm_distro(
    release: str | None, vendor: str | None = None, distribution: str | None = None,
    db_format: str | None = None,
) -> str | None:
    """The distribution an installed rpm came from, as far as its header says.

    The release's dist tag is the most specific sign (``.fc40``), then the
    VENDOR/DISTRIBUTION tags; ndb databases are used by SUSE alone.
    """
    if release and fedora_dist_tag(release):
        return "fedora"
    text = f"{vendor or ''} {distribution or ''}".lower()
    if "suse" in text:
        return "opensuse"
    if "fedora" in text:
        return "fedora"
    if db_format == "ndb":
        return "opensuse"
    return None


def package_names(ecosystem: Ecosystem | str) -> frozenset[str]:
    """Every package name of xz that the table lists for ``ecosystem``."""
    eco = Ecosystem(ecosystem)
    return frozenset(name for row in TABLE if row.ecosystem is eco for name in row.packages)


def is_xz_package(ecosystem: Ecosystem | str, name: str, source: str | None = None) -> bool:
    """Whether a package is one of xz's: by its source (package) name or its own name.

    ``source`` is dpkg's Source, rpm's SOURCERPM, apk's origin or pacman's
    %BASE%; it catches subpackages no list names.
    """
    eco = Ecosystem(ecosystem)
    if source:
        if eco is Ecosystem.DPKG and source == DEBIAN_SOURCE:
            return True
        if eco is Ecosystem.RPM and _SOURCE_RPM.match(source):
            return True
        if eco is Ecosystem.APK and source == ALPINE_ORIGIN:
            return True
        if eco is Ecosystem.PACMAN and source == ARCH_BASE:
            return True
    return any(name in row.packages for row in TABLE if row.ecosystem is eco)


def judge(
    ecosystem: Ecosystem | str,
    name: str,
    version: str,
    release: str | None = None,
    distro_hint: str | None = None,
    *,
    arch: str | None = None,
    source: str | None = None,
) -> VersionClaim:
    """Judge one installed package by its version alone.

    ``version`` is the full version string of the ecosystem (dpkg
    ``5.6.1-1``, apk ``5.6.1-r1``, pacman ``[epoch:]5.6.1-1``); for rpm it is
    the VERSION tag and ``release`` the RELEASE tag (``[epoch:]v-r`` in
    ``version`` alone is split too). ``distro_hint`` names a table row's
    distro when the caller knows it better than the version does.
    """
    eco = Ecosystem(ecosystem)
    if not is_xz_package(eco, name, source):
        return VersionClaim(False, None, f"{name} is not an xz package")
    if eco is Ecosystem.RPM:
        if release is None:
            _, version, release = split_evr(version)
        else:
            version = split_evr(version)[1]
        distro = distro_hint or guess_rpm_distro(release)
    else:
        distro = distro_hint
    rows = [r for r in TABLE if r.ecosystem is eco]
    distro = DISTRO_ALIASES.get(distro or "", distro) or _default_distro(eco)
    named = [r for r in rows if r.distro == distro and not r.catch_all]
    if not named and eco is not Ecosystem.RPM:
        # dpkg, apk and pacman each have one row: a derivative (Wolfi, Manjaro)
        # shipped its parent's versions or none at all.
        named = [r for r in rows if not r.catch_all]
    for row in named + [r for r in rows if r.catch_all]:
        if row.dist_tags and fedora_dist_tag(release or "") not in row.dist_tags:
            continue
        try:
            inside = row.contains(version)
        except ValueError as exc:
            return VersionClaim(False, None, f"unparsable {eco.value} version {version!r}: {exc}", distro)
        if inside:
            return _claim(row, arch, distro)
    shown = f"{version}-{release}" if release else version
    return VersionClaim(False, None, f"{eco.value} {name} {shown} is outside every affected xz range", distro)


def _claim(row: AffectedBuilds, arch: str | None, distro: str | None) -> VersionClaim:
    injected = row.injected
    reason = row.why
    if injected and arch is not None and arch not in ARCH_INDEPENDENT and arch not in X86_64_ARCHES:
        injected = False
        reason += f"; but this is an {arch} build, and the trigger fired only on x86-64"
    return VersionClaim(True, injected, reason, (distro or row.distro) if row.catch_all else row.distro)


def _default_distro(eco: Ecosystem) -> str | None:
    return {
        Ecosystem.DPKG: "debian",
        Ecosystem.APK: "alpine",
        Ecosystem.PACMAN: "arch",
        Ecosystem.HOMEBREW: "homebrew",
    }.get(eco)


def rule_table(ecosystem: Ecosystem | str) -> list[dict[str, Any]]:
    """The rows of one ecosystem as JSON, for a detector's ``rule_tables()``."""
    eco = Ecosystem(ecosystem)
    return [row.to_json() for row in TABLE if row.ecosystem is eco]


FACT_COLLECTOR = "packages"
"""The collector name of package facts; the assessment looks them up by it."""


def package_results(
    database: str, path: str, package: str, version: str, claim: VersionClaim, **extra: Any
) -> list[Finding | Fact]:
    """What every package detector reports about one installed xz package.

    A ``packages`` fact always (the assessment compares the database's claim
    with the bytes, in both directions), and a ``<database>-affected-version``
    finding when the version is affected. ``extra`` (arch, origin, source...)
    goes into both; keys whose value is None are left out.
    """
    more = {key: value for key, value in extra.items() if value is not None}
    results: list[Finding | Fact] = []
    if claim.affected:
        evidence: dict[str, Any] = {
            "package": package,
            "version": version,
            "database": database,
            "distro": claim.distro,
            "injected_builds": claim.injected,
            **more,
        }
        results.append(
            Finding(
                rule=f"{database}-affected-version",
                kind=Kind.PACKAGE,
                indicates=Indicates.AFFECTED_VERSION,
                path=path,
                evidence=evidence,
            )
        )
    data: dict[str, Any] = {
        "database": database,
        "package": package,
        "version": version,
        "affected": claim.affected,
        "injected_builds": claim.injected,
        "distro": claim.distro,
        **more,
    }
    results.append(Fact(collector=FACT_COLLECTOR, path=path, data=data))
    return results
