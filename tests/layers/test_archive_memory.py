"""A large member of a zip is held once while it is judged, not inflated all at once.

zipfile's ``read()`` of a whole member inflates it in one call and held 2.3x the
member (compressed input, output, zlib's doubling buffer): a 414 MiB library
in a 192 MB torch wheel took a host walk to 1.2 GiB. Measured here on the real
CLI under GNU time, with a member of zeros behind an ELF header (every ELF
detector wants it; it compresses to almost nothing).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.support.cli import measured_scan

MEMBER = 320 * 1024 * 1024


def test_a_large_zip_member_is_held_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with zipfile.ZipFile(root / "big.whl", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            archive.open("pkg/libbig.so", "w", force_zip64=True) as member:
        member.write(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00\x3e\x00")
        block = b"\0" * (1 << 20)
        for _ in range(MEMBER >> 20):
            member.write(block)
    done = measured_scan(f"rootfs:{root}", tmp_path / "out.json")
    assert done.status == 0, done.stderr
    peak_mib = done.peak_mib
    member_mib = MEMBER / (1 << 20)
    assert peak_mib < member_mib * 1.4 + 80, f"peak {peak_mib:.0f} MiB for a {member_mib:.0f} MiB member"
