"""``make bench-peers``'s harness (benchmarks/peers): rounds, medians, ratios, the table.

The peer libraries are not needed: the cases here are made up, or flowcore's own.
"""

from __future__ import annotations

import json

from benchmarks.peers import harness, with_flowcore


def made_up(log: list[str], workload: str, library: str, per_op: float, **kw) -> harness.Case:
    """A case whose operations take ``per_op`` seconds, by its own account; logs its rounds."""
    return harness.Case(
        workload,
        library,
        "1.0",
        "made up",
        start=lambda: log.append(library),
        run=lambda n: n * per_op,
        **kw,
    )


def test_each_round_runs_every_case_once_with_calibrated_whole_turns() -> None:
    log: list[str] = []
    cases = [
        made_up(log, "step-memory", "fast", 1e-6, baseline=True),
        made_up(log, "step-memory", "slow", 1e-3),
        made_up(log, "whole-run", "fast", 2e-6, baseline=True),
        made_up(log, "whole-run", "slower", 5e-6),
    ]
    harness.measure(cases, rounds=5, seconds=0.03, cap=1000, seed=7)

    # One calibration each, then 5 rounds, each a permutation of the 4 cases.
    rounds = [log[i : i + 4] for i in range(4, len(log), 4)]
    assert len(rounds) == 5
    assert all(sorted(r) == sorted(["fast", "slow", "fast", "slower"]) for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # shuffled anew each round
    assert [c.ops for c in cases] == [999, 30, 999, 999]  # capped, multiples of 3
    assert all(len(c.samples) == 5 for c in cases)


def test_rows_give_medians_and_ratios_to_the_workloads_baseline() -> None:
    def case(workload: str, library: str, samples: list[float], baseline=False) -> harness.Case:
        done = harness.Case(workload, library, "2.0", "how", lambda: None, lambda n: 0.0)
        done.samples, done.baseline, done.ops = samples, baseline, 3
        return done

    cases = [
        case("step-memory", "peer", [40e-6, 100e-6, 38e-6]),
        case("step-memory", "slow peer", [3e-3]),
        case("step-memory", "flowcore", [5e-6, 6e-6, 50e-6], baseline=True),
        case("whole-run", "peer", [1e-3]),
        case("step-sqlite", "peer", []),  # never measured: no row
    ]
    rows = harness.rows(cases)
    assert [(r["workload"], r["library"]) for r in rows] == [
        ("step-memory", "flowcore"),
        ("step-memory", "peer"),
        ("step-memory", "slow peer"),
        ("whole-run", "peer"),
    ]
    assert rows[0]["median_us"] == 6.0
    assert rows[1]["median_us"] == 40.0
    assert rows[1]["ratio"] == 40.0 / 6.0
    assert (rows[1]["min_us"], rows[1]["max_us"]) == (38.0, 100.0)
    assert rows[3]["ratio"] is None  # no flowcore figure to compare with

    skipped = [harness.Skipped("step-memory", "other", "not installed")]
    table = harness.markdown_table(rows, skipped).splitlines()
    assert table[2] == (
        "| one step per request, in memory | flowcore 2.0 | how | 6.00 | 5.00 / 50.0 | 1.00x |"
    )
    assert table[3] == "|  | peer 2.0 | how | 40.0 | 38.0 / 100 | 6.67x |"
    assert table[4] == "|  | slow peer 2.0 | how | 3,000 | 3,000 / 3,000 | 500x |"
    assert table[5] == "|  | other | not measured: not installed | | | |"
    assert table[6] == (
        "| a whole 3-task run, in memory | peer 2.0 | how | 1,000 | 1,000 / 1,000 |  |"
    )


def test_the_report_says_what_was_run(tmp_path) -> None:
    about = {
        "date": "2026-12-05",
        "command": "benchmarks/peers/run.py --rounds 3",
        "cpus": 2,
        "python": "CPython 3.11.7",
        "platform": "Linux",
        "load_average": [0.5, 1.25],
        "rounds": 3,
        "versions": {"flowcore": "0.1.0", "langgraph": "1.2.24"},
    }
    skipped = [harness.Skipped("step-postgres", "flowcore", "PostgreSQL is down")]
    markdown, data = harness.write_report(tmp_path / "out", [], skipped, about)
    text = markdown.read_text()
    assert "Date: 2026-12-05. Command: `benchmarks/peers/run.py --rounds 3`." in text
    assert "load average (1 min) before and after: 0.5 and 1.25" in text
    assert "Versions: flowcore 0.1.0, langgraph 1.2.24." in text
    assert "| flowcore | not measured: PostgreSQL is down |" in text
    report = json.loads(data.read_text())
    assert report["rows"] == []
    assert report["skipped"] == [
        {"workload": "step-postgres", "library": "flowcore", "reason": "PostgreSQL is down"}
    ]


def test_flowcores_cases_check_what_one_operation_does() -> None:
    cases = with_flowcore.memory_cases()
    try:
        assert [(c.workload, c.baseline) for c in cases] == [
            ("step-memory", True),
            ("whole-run", True),
            ("reference", False),
        ]
        harness.measure(cases, rounds=2, seconds=0.001, cap=30)
        for case in cases:
            assert case.ops % 3 == 0
            assert len(case.samples) == 2
            assert all(sample > 0 for sample in case.samples)
    finally:
        for case in cases:
            case.close()
