"""Run the fuzz harnesses (atheris + libFuzzer), each for a bounded time, and report what they did.

    python -m fuzz.run [TARGET ...] [--seconds N] [--json OUT]

Each target runs in a process of its own (libFuzzer owns the process it runs in), seeded from
``fuzz.targets``, with an input timeout (a hang is a crasher) and an RSS limit (so is memory
without bound). A crasher is written to ``--artifacts`` (default ``fuzz/found/``) and the
target fails; kept crashers live in ``fuzz/crashers/TARGET/`` and are replayed by
``tests/test_fuzz_crashers.py``. The table gives executions, executions per second, the corpus
grown and the peak RSS, as libFuzzer counts them.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INPUT_TIMEOUT = 10
"""Seconds one input may take before libFuzzer calls it a hang."""
RSS_LIMIT_MB = 1024
"""Memory one harness process may reach before libFuzzer calls the input a leak of bounds."""


@dataclass
class Outcome:
    target: str
    seconds: int
    executions: int
    per_second: int
    corpus_added: int
    peak_rss_mb: int
    crashed: bool
    artifact: str | None


def _child(name: str, argv: list[str]) -> None:
    """Inside the fuzzing process: instrument layerhound, then hand control to libFuzzer."""
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=["layerhound"]):
        from fuzz.targets import TARGETS
    target = TARGETS[name]
    atheris.Setup([sys.argv[0], *argv], target.run)
    atheris.Fuzz()


def _stat(text: str, key: str) -> int:
    found = re.findall(rf"stat::{key}:\s+(\d+)", text)
    return int(found[-1]) if found else 0


def run_target(name: str, seconds: int, artifacts: Path) -> Outcome:
    """One target for ``seconds``, in a child process; its outcome from libFuzzer's final stats."""
    from fuzz.targets import TARGETS

    target = TARGETS[name]
    artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"layerhound-fuzz-{name}-") as corpus:
        for index, seed in enumerate(target.seeds()):
            (Path(corpus) / f"seed-{index}").write_bytes(seed)
        before = len(list(Path(corpus).iterdir()))
        argv = [f"-max_total_time={seconds}", f"-timeout={INPUT_TIMEOUT}", f"-rss_limit_mb={RSS_LIMIT_MB}",
                f"-max_len={target.max_len}", f"-artifact_prefix={artifacts}/{name}-", "-print_final_stats=1",
                corpus]
        done = subprocess.run(
            [sys.executable, "-c", f"from fuzz.run import _child; _child({name!r}, {argv!r})"],
            capture_output=True, text=True, cwd=REPO, check=False, timeout=seconds + 300,
        )
        added = len(list(Path(corpus).iterdir())) - before
    log = done.stdout + done.stderr
    written = re.findall(r"Test unit written to (\S+)", log)
    crashed = done.returncode != 0
    if crashed:
        sys.stderr.write(log[-6000:])
    return Outcome(name, seconds, _stat(log, "number_of_executed_units"), _stat(log, "average_exec_per_sec"),
                   added, _stat(log, "peak_rss_mb"), crashed, written[-1] if written else None)


def main(argv: list[str] | None = None) -> int:
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], help="default: all")
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--artifacts", type=Path, default=REPO / "fuzz" / "found")
    parser.add_argument("--json", type=Path, help="write the outcomes here as JSON")
    args = parser.parse_args(argv)
    outcomes = [run_target(name, args.seconds, args.artifacts) for name in (args.targets or list(TARGETS))]
    print(f"{'target':<10} {'seconds':>7} {'executions':>11} {'exec/s':>7} {'new units':>9} {'peak RSS':>9}  result")
    for o in outcomes:
        result = f"CRASH {o.artifact or ''}" if o.crashed else "ok"
        print(f"{o.target:<10} {o.seconds:>7} {o.executions:>11} {o.per_second:>7} {o.corpus_added:>9} "
              f"{o.peak_rss_mb:>6} MB  {result}")
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    return 1 if any(o.crashed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
