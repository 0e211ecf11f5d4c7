"""The benchmark gate's checks (benchmarks/gate.py), on figures made up for the purpose."""

from __future__ import annotations

from benchmarks.gate import check, ratios

BOUNDS = {"tolerance": 0.25, "backstop": 3.0, "max_ratio": {}}
BASE_MEDIANS = {
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


def figures(scale: float = 1.0, **slower: float) -> dict[str, dict[str, float]]:
    out = {}
    for name, median in BASE_MEDIANS.items():
        factor = scale * slower.get(name.split("[")[0], 1.0)
        out[name] = {"median": median * factor, "min": median * factor}
    return out


def baseline() -> dict:
    found = ratios(figures())
    return {
        "ratios": {k: v for k, v in found.items() if k.endswith("reference")},
        "median_us": {
            k: v for k, v in BASE_MEDIANS.items() if "compiled" in k or k == "test_reference_kernel"
        },
    }


def test_a_machine_that_runs_everything_slower_today_passes_the_gate():
    slow = figures(scale=5.0)

    assert check(slow, ratios(slow), BOUNDS, baseline()) == []


def test_a_part_four_times_slower_fails_the_backstop_whatever_the_machine():
    for scale in (1.0, 5.0):
        slow = figures(scale=scale, test_codec=4.0)

        failures = check(slow, ratios(slow), BOUNDS, baseline())

        assert any(f.startswith("test_codec[compiled] median") for f in failures), failures


def test_a_step_slower_than_the_tolerance_fails_its_ratio():
    slow = figures(test_step=1.3)

    failures = check(slow, ratios(slow), BOUNDS, baseline())

    assert any(f.startswith("step sync compiled / reference") for f in failures), failures
