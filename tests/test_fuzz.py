"""The fuzz harnesses: a bounded run of each (``make fuzz`` runs them longer), and every kept crasher.

A run fails on any input that raises what its parser does not document, hangs past
``fuzz.run.INPUT_TIMEOUT`` or grows the process past ``fuzz.run.RSS_LIMIT_MB``. The crashers
in ``fuzz/crashers/TARGET/`` are inputs the fuzzer once found; each must now be refused cleanly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.run import run_target
from fuzz.targets import PACKAGE_PATHS, STARTUP_PATHS, TARGETS, judge_file

CRASHERS = Path(__file__).resolve().parents[1] / "fuzz" / "crashers"
CI_SECONDS = 30


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_bounded_fuzz_run_finds_no_crasher(name: str, tmp_path: Path) -> None:
    outcome = run_target(name, CI_SECONDS, tmp_path)
    assert not outcome.crashed, f"crasher {outcome.artifact} (see the log above); keep it in fuzz/crashers/{name}/"
    assert outcome.executions > 100 and outcome.per_second > 0, outcome
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "crasher", sorted(CRASHERS.glob("*/*")), ids=lambda path: f"{path.parent.name}/{path.name}"
)
def test_every_kept_crasher_is_refused_cleanly(crasher: Path) -> None:
    TARGETS[crasher.parent.name].run(crasher.read_bytes())


def test_the_seeds_reach_the_parsers_they_are_for() -> None:
    """A seed that no detector takes would fuzz nothing: each package and start-up seed is taken."""
    for name, paths in (("packages", PACKAGE_PATHS), ("startup", STARTUP_PATHS)):
        for seed in TARGETS[name].seeds():
            assert judge_file(paths[seed[0] % len(paths)], seed[1:]) > 0, (name, seed[:40])
