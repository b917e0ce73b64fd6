"""Build the project's own C test samples with gcc.

Why: detector tests need real ELF files with known contents. Compiling them
from source in the repository (never committing binaries, never copying real
malware) keeps the samples reviewable and lets each test pick a variant with
preprocessor macros.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
IMPLANT_SIM = SAMPLES / "implant_sim.c"
CPU_SUPPORTS_CTL = SAMPLES / "cpu_supports_ctl.c"
"""Control: an honest ``__builtin_cpu_supports`` IFUNC resolver."""
STATIC_MAIN = SAMPLES / "static_main.c"
"""A ``main`` for a static link of ``IMPLANT_SIM`` into an executable."""
NOCFI_ASM_CTL = SAMPLES / "nocfi_asm_ctl.S"
"""Control: hand-written assembly without unwind information."""
LD_LINUX_FLAG = "-l:ld-linux-x86-64.so.2"
"""Link flag that puts ld-linux-x86-64.so.2 into DT_NEEDED, as the implant's liblzma had."""


def require_gcc() -> str:
    """Path of gcc; the Makefile installs it, so its absence is a failure."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is not installed: run `make setup` first")
    return gcc


def _variant_dir(
    out_dir: Path, kind: str, defines: Sequence[str], opt: str, strip: bool, extra: Sequence[str] = ()
) -> Path:
    """One directory per build variant, so variants never overwrite each other
    and the output file can keep its realistic name. ``extra`` (sources and
    flags beyond the defaults) only adds a short digest, keeping names short."""
    tag = "-".join([kind, *defines, opt.lstrip("-") or "noopt", "strip" if strip else "full"])
    if extra:
        tag += "-" + hashlib.sha256("\0".join(extra).encode()).hexdigest()[:10]
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
    extra_sources: Sequence[Path] = (),
    cflags: Sequence[str] = (),
    ldflags: Sequence[str] = (),
) -> Path:
    """Compile ``src`` (and ``extra_sources``, C or assembly) into a shared
    library named ``soname``; return its path.

    ``defines`` are macro names (``"WITH_PROLOGUE"``) or ``NAME=VALUE``.
    ``cflags`` apply to every source (e.g. ``-fno-asynchronous-unwind-tables``);
    ``ldflags`` go after the sources (e.g. ``LD_LINUX_FLAG``).
    """
    extra = [*map(str, extra_sources), *cflags, "--", *ldflags] if (extra_sources or cflags or ldflags) else []
    out = _variant_dir(out_dir, "so", defines, opt, strip, extra) / soname
    cmd = [require_gcc(), "-shared", "-fPIC", opt, f"-Wl,-soname,{soname}", *cflags]
    cmd += [f"-D{d}" for d in defines]
    if strip:
        cmd.append("-s")
    _run([*cmd, "-o", str(out), str(src), *map(str, extra_sources), *ldflags])
    return out


def compile_object(
    src: Path,
    out_dir: Path,
    defines: Sequence[str] = (),
    opt: str = "-O2",
    name: str | None = None,
    cflags: Sequence[str] = (),
) -> Path:
    """Compile ``src`` into a relocatable object (``-c``); return its path."""
    out = _variant_dir(out_dir, "obj", defines, opt, False, cflags) / (name or f"{src.stem}.o")
    cmd = [require_gcc(), "-c", "-fPIC", opt, *cflags, *(f"-D{d}" for d in defines)]
    _run([*cmd, "-o", str(out), str(src)])
    return out


def compile_static_executable(
    src: Path, out_dir: Path, defines: Sequence[str] = (), opt: str = "-O2", pie: bool = False, strip: bool = False
) -> Path:
    """``src`` linked statically with ``STATIC_MAIN`` into a program: ET_EXEC, or with ``pie``
    a static-pie (ET_DYN); ``-fPIC`` as the objects of a shared liblzma build are compiled."""
    mode = "-static-pie" if pie else "-static"
    out = _variant_dir(out_dir, "exe", defines, opt, strip, [mode]) / "xz-static"
    cmd = [require_gcc(), mode, "-fPIC", opt, *(f"-D{d}" for d in defines)]
    if strip:
        cmd.append("-s")
    _run([*cmd, "-o", str(out), str(src), str(STATIC_MAIN)])
    return out
