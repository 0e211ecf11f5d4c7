"""The benchmark gate: run the hot-path benchmarks and fail when a same-run ratio regresses.

    python benchmarks/gate.py                    # run, report, check (CI: make bench-check)
    python benchmarks/gate.py --update-baseline  # run, then record the ratios as the baseline

What fails the gate (each figure is µs per operation, median over the rounds):

1. compiled / pure above its bound in ``bounds.json`` (the compiled core lost its lead);
2. a step / reference-kernel ratio more than ``tolerance`` (25%) above ``baseline.json``;
3. a compiled figure more than ``backstop`` (3x) above its baseline figure, scaled by how much
   slower the reference kernel runs now than when the baseline was recorded (a host that runs
   everything 5x slower today is no regression): a loose net under the ratios of check 2.

A failing check is measured once more before the gate fails. Without ``baseline.json`` the
checks that need it are skipped, never failed. The targets in ``bounds.json`` are reported,
not gated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BOUNDS = HERE / "bounds.json"
BASELINE = HERE / "baseline.json"
RESULTS = ROOT / "build" / "benchmarks.json"


def run_benchmarks() -> dict[str, dict[str, float]]:
    """Run benchmarks/test_hot_path.py; µs per operation by benchmark name."""
    RESULTS.parent.mkdir(exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE / "test_hot_path.py"),
        "-q",
        "--benchmark-only",
        "--benchmark-columns=min,median",
        f"--benchmark-json={RESULTS}",
    ]
    subprocess.run(command, cwd=ROOT, check=True)
    report = json.loads(RESULTS.read_text())
    figures = {}
    for bench in report["benchmarks"]:
        ops = bench["extra_info"].get("ops_per_round", 1)
        figures[bench["name"]] = {
            "median": bench["stats"]["median"] / ops * 1e6,
            "min": bench["stats"]["min"] / ops * 1e6,
        }
    return figures


def ratios(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    """The same-run ratios the gate and the docs speak of, from the medians."""
    med = {name: f["median"] for name, f in figures.items()}
    reference = med["test_reference_kernel"]
    out = {}
    for kind in ("sync", "async"):
        out[f"step {kind}: compiled / pure"] = (
            med[f"test_step[compiled-{kind}]"] / med[f"test_step[pure-{kind}]"]
        )
        for impl in ("compiled", "pure"):
            out[f"step {kind} {impl} / reference"] = med[f"test_step[{impl}-{kind}]"] / reference
    out["engine step: compiled / pure"] = (
        med["test_step_engine_only[compiled]"] / med["test_step_engine_only[pure]"]
    )
    out["engine step compiled / reference"] = med["test_step_engine_only[compiled]"] / reference
    out["chain: compiled / pure"] = med["test_chain[compiled]"] / med["test_chain[pure]"]
    out["codec: compiled / pure"] = med["test_codec[compiled]"] / med["test_codec[pure]"]
    out["codec compiled / bare msgpack"] = (
        med["test_codec[compiled]"] / med["test_codec_bare_msgpack"]
    )
    out["graph 10k / 10 tasks"] = (
        med["test_scaling_graph_size[10000]"] / med["test_scaling_graph_size[10]"]
    )
    out["storage 100k / 1 sessions"] = (
        med["test_scaling_stored_sessions[100000]"] / med["test_scaling_stored_sessions[1]"]
    )
    return out


def report(figures: dict[str, dict[str, float]], found: dict[str, float]) -> None:
    print("\nµs per operation            median        min")
    for name, f in sorted(figures.items()):
        print(f"  {name:44s} {f['median']:10.3f} {f['min']:10.3f}")
    print("\nratios (medians, same run)")
    for name, value in found.items():
        print(f"  {name:44s} {value:10.3f}")


def check(
    figures: dict[str, dict[str, float]], found: dict[str, float], bounds: dict, baseline: dict
) -> list[str]:
    failures = []
    for name, bound in bounds["max_ratio"].items():
        if found[name] > bound:
            failures.append(f"{name} = {found[name]:.3f}, above its bound {bound}")
    tolerance = bounds["tolerance"]
    for name, base in baseline.get("ratios", {}).items():
        if name.endswith("/ reference") and found.get(name, 0) > base * (1 + tolerance):
            failures.append(
                f"{name} = {found[name]:.2f}, more than {tolerance:.0%} above "
                f"the baseline {base:.2f}"
            )
    backstop = bounds["backstop"]
    medians = baseline.get("median_us", {})
    slower = machine_slowdown(figures, medians)
    for name, base in medians.items():
        if name == REFERENCE or name not in figures:
            continue
        if figures[name]["median"] > base * backstop * slower:
            failures.append(
                f"{name} median {figures[name]['median']:.2f} µs, more than {backstop}x "
                f"the baseline {base:.2f} µs (x{slower:.2f} for this machine's speed now)"
            )
    return failures


REFERENCE = "test_reference_kernel"


def machine_slowdown(figures: dict[str, dict[str, float]], medians: dict[str, float]) -> float:
    """How many times slower the reference kernel runs now than in the baseline (at least 1)."""
    base = medians.get(REFERENCE)
    if not base or REFERENCE not in figures:
        return 1.0
    return max(1.0, figures[REFERENCE]["median"] / base)


def report_targets(figures: dict[str, dict[str, float]], found: dict[str, float], bounds: dict):
    print("\ntargets (reported, not gated)")
    for name, target in bounds["targets"].items():
        value = found[name] if name in found else figures[name]["median"]
        mark = "met" if value <= target else "NOT met"
        print(f"  {name:44s} {value:10.3f}  target <= {target}  {mark}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update-baseline", action="store_true")
    args = parser.parse_args()
    bounds = json.loads(BOUNDS.read_text())
    figures = run_benchmarks()
    found = ratios(figures)
    report(figures, found)
    report_targets(figures, found, bounds)
    if args.update_baseline:
        BASELINE.write_text(
            json.dumps(
                {
                    "ratios": {k: round(v, 3) for k, v in found.items() if k.endswith("reference")},
                    "median_us": {
                        k: round(f["median"], 3)
                        for k, f in figures.items()
                        if "compiled" in k or k == REFERENCE
                    },
                },
                indent=2,
            )
            + "\n"
        )
        print(f"\nbaseline written to {BASELINE.relative_to(ROOT)}")
        return 0
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    if not baseline:
        print("\nno baseline.json: the baseline checks are skipped")
    failures = check(figures, found, bounds, baseline)
    if failures:
        print("\nthe gate failed; measuring once more:", *failures, sep="\n  ")
        figures = run_benchmarks()
        found = ratios(figures)
        report(figures, found)
        failures = check(figures, found, bounds, baseline)
    if failures:
        print("\nbenchmark gate FAILED:", *failures, sep="\n  ")
        return 1
    print("\nbenchmark gate passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
