"""Build the project's own C test samples with gcc.

Why: detector tests need real ELF files with known contents. Compiling them
from source in the repository (never committing binaries, never copying real
malware) keeps the samples reviewable and lets each test pick a variant with
preprocessor macros.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
IMPLANT_SIM = SAMPLES / "implant_sim.c"


def require_gcc() -> str:
    """Path of gcc; the Makefile installs it, so its absence is a failure."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is not installed: run `make setup` first")
    return gcc


def _variant_dir(out_dir: Path, kind: str, defines: Sequence[str], opt: str, strip: bool) -> Path:
    """One directory per build variant, so variants never overwrite each other
    and the output file can keep its realistic name."""
    tag = "-".join([kind, *defines, opt.lstrip("-") or "noopt", "strip" if strip else "full"])
    directory = out_dir / tag
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr}")


def compile_shared(
    src: Path,
    out_dir: Path,
    defines: Sequence[str] = (),
    opt: str = "-O2",
    strip: bool = False,
    soname: str = "liblzma.so.5",
) -> Path:
    """Compile ``src`` into a shared library named ``soname``; return its path.

    ``defines`` are macro names (``"WITH_PROLOGUE"``) or ``NAME=VALUE``.
    """
    out = _variant_dir(out_dir, "so", defines, opt, strip) / soname
    cmd = [require_gcc(), "-shared", "-fPIC", opt, f"-Wl,-soname,{soname}"]
    cmd += [f"-D{d}" for d in defines]
    if strip:
        cmd.append("-s")
    _run([*cmd, "-o", str(out), str(src)])
    return out


def compile_object(
    src: Path,
    out_dir: Path,
    defines: Sequence[str] = (),
    opt: str = "-O2",
    name: str | None = None,
) -> Path:
    """Compile ``src`` into a relocatable object (``-c``); return its path."""
    out = _variant_dir(out_dir, "obj", defines, opt, False) / (name or f"{src.stem}.o")
    cmd = [require_gcc(), "-c", "-fPIC", opt, *(f"-D{d}" for d in defines)]
    _run([*cmd, "-o", str(out), str(src)])
    return out
