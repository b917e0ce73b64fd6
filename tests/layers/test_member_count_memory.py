"""Memory in the member count: a layer of a million tiny members is walked and assessed in flat memory.

The layer is written here (1,000 directories of 1,000 empty files, about 7 MB of gzip) by
a header writer of this test's own: tarfile takes 40 s for a million headers, this 3 s.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import pytest

from tests.support.cli import measured_scan
from tests.support.imagewriter import ImageSpec, Layer, write_oci

DIRECTORIES = 1_000
FILES_PER_DIRECTORY = 1_000
CAP_MIB = 300


def _header(name: bytes, kind: bytes, mode: bytes) -> bytes:
    """A ustar header of an empty member; the checksum as POSIX defines it (sum with the field as spaces)."""
    header = bytearray(512)
    header[0 : len(name)] = name
    header[100:108] = mode
    header[108:116] = header[116:124] = b"0000000\0"
    header[124:136] = b"00000000000\0"
    header[136:148] = b"00000000000\0"
    header[148:156] = b" " * 8
    header[156:157] = kind
    header[257:265] = b"ustar\x0000"
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def million_member_layer() -> tuple[bytes, str]:
    """The gzip blob and the diff_id of the layer."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    tar_hash = hashlib.sha256()
    parts = []
    for d in range(DIRECTORIES):
        chunk = [_header(b"data/d%04d/" % d, b"5", b"0000755\0")]
        chunk += [_header(b"data/d%04d/file-%05d.txt" % (d, i), b"0", b"0000644\0") for i in range(FILES_PER_DIRECTORY)]
        block = b"".join(chunk)
        tar_hash.update(block)
        parts.append(compressor.compress(block))
    tar_hash.update(bytes(1024))
    parts += [compressor.compress(bytes(1024)), compressor.flush()]
    return b"".join(parts), "sha256:" + tar_hash.hexdigest()


@pytest.mark.long
def test_a_million_members_are_walked_under_300_mib(tmp_path: Path) -> None:
    blob, diff_id = million_member_layer()
    write_oci(tmp_path / "layout", ImageSpec([Layer.raw_blob(blob, diff_id)]))
    out = tmp_path / "report.json"
    run = measured_scan(f"oci:{tmp_path / 'layout'}", out)
    assert run.status == 0, run.stderr
    [image] = json.loads(out.read_text())["images"]
    assert image["verdict"] == "clean"
    [layer] = image["layers"]
    assert layer["stats"]["entries"] == DIRECTORIES * (FILES_PER_DIRECTORY + 1)
    assert run.peak_mib < CAP_MIB, f"peak {run.peak_mib:.0f} MiB for {layer['stats']['entries']} members"
