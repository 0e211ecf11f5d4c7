"""The benchmark gate (benchmarks/gate.py): its checks, on figures made up for the purpose, and
how it measures again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.gate import check, ratios
from flowcore.testing._timing import Rounds

ROOT = Path(__file__).resolve().parent.parent
BOUNDS = {"tolerance": 0.25, "backstop": 3.0, "max_ratio": {}}
BASE_FASTEST = {
    "test_reference_kernel": 0.1,
    "test_step[compiled-sync]": 6.0,
    "test_step[compiled-async]": 7.0,
    "test_step[pure-sync]": 9.0,
    "test_step[pure-async]": 10.0,
    "test_step_engine_only[compiled]": 1.0,
    "test_step_engine_only[pure]": 2.0,
    "test_chain[compiled]": 0.4,
    "test_chain[pure]": 0.9,
    "test_codec[compiled]": 11.0,
    "test_codec[pure]": 20.0,
    "test_codec_bare_msgpack": 10.0,
    "test_scaling_graph_size[10]": 6.0,
    "test_scaling_graph_size[10000]": 6.0,
    "test_scaling_stored_sessions[1]": 6.0,
    "test_scaling_stored_sessions[100000]": 6.0,
}


def figures(scale: float = 1.0, **slower: float) -> dict[str, Rounds]:
    """Three rounds of each workload (seconds per operation), the fastest at the given figure."""
    out = {}
    for name, fastest in BASE_FASTEST.items():
        factor = scale * slower.get(name.split("[")[0], 1.0)
        out[name] = Rounds(name, [fastest * factor * 1.3e-6, fastest * factor * 1e-6, 2e-3])
    return out


def baseline() -> dict:
    found = ratios(figures())
    return {
        "ratios": {k: v for k, v in found.items() if k.endswith("reference")},
        "min_us": {
            k: v for k, v in BASE_FASTEST.items() if "compiled" in k or k == "test_reference_kernel"
        },
    }


def test_a_machine_that_runs_everything_slower_today_passes_the_gate():
    slow = figures(scale=5.0)

    assert check(slow, ratios(slow), BOUNDS, baseline()) == []


def test_a_part_four_times_slower_fails_the_backstop_whatever_the_machine():
    for scale in (1.0, 5.0):
        slow = figures(scale=scale, test_codec=4.0)

        failures = check(slow, ratios(slow), BOUNDS, baseline())

        assert any(f.startswith("test_codec[compiled] ") for f in failures), failures


def test_a_step_slower_than_the_tolerance_fails_its_ratio():
    slow = figures(test_step=1.3)

    failures = check(slow, ratios(slow), BOUNDS, baseline())

    assert any(f.startswith("step sync compiled / reference") for f in failures), failures


def test_a_slow_spell_in_some_rounds_does_not_move_a_ratio():
    calm = figures()
    busy = figures()
    for rounds in busy.values():  # a neighbour slowed two rounds of every workload 3x
        rounds.per_op = [rounds.per_op[0] * 3, rounds.per_op[1], rounds.per_op[2] * 3]

    assert ratios(busy) == ratios(calm)
    assert check(busy, ratios(busy), BOUNDS, baseline()) == []


def run_gate(tmp_path: Path, scale: float) -> subprocess.CompletedProcess[str]:
    """benchmarks/gate.py, in 3 rounds, against the committed baseline's ratios times ``scale``."""
    committed = json.loads((ROOT / "benchmarks" / "baseline.json").read_text())
    baseline = tmp_path / "baseline.json"
    ratios = {name: value * scale for name, value in committed["ratios"].items()}
    baseline.write_text(json.dumps({"ratios": ratios, "min_us": committed["min_us"]}))
    gate = [sys.executable, str(ROOT / "benchmarks" / "gate.py"), "--rounds", "3"]
    # The gate times both implementations itself, whichever one this test run imports.
    env = {k: v for k, v in os.environ.items() if k != "FLOWCORE_NO_EXTENSIONS"}
    return subprocess.run(
        [*gate, "--baseline", str(baseline)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_failing_gate_measures_once_more_in_a_fresh_process_then_fails(tmp_path: Path):
    done = run_gate(tmp_path, scale=0.01)  # no step is 100x faster than the baseline says

    assert done.returncode == 1, done.stderr
    first, _, second = done.stdout.partition("measuring once more, in a fresh process:")
    assert second, done.stdout
    assert "ratios (of the fastest rounds)" in first
    assert "ratios (of the fastest rounds)" in second  # measured again, by the new process
    assert "benchmark gate FAILED:" in second
    assert second.count("measuring once more") == 0  # and only once


def test_a_passing_gate_measures_once(tmp_path: Path):
    done = run_gate(tmp_path, scale=100.0)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "measuring once more" not in done.stdout
    assert done.stdout.count("ratios (of the fastest rounds)") == 1
    assert done.stdout.rstrip().endswith("benchmark gate passed")
