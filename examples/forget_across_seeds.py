"""Retained-accuracy gaps of several `benchmark_forget.py` runs, one per seed, class by class.

A class's gap to the monolithic retrain moves by up to two points with the seed (both
models' initial weights and batch order change), so one run gives one draw per class.
This reads runs at different seeds and reports each class's gap per seed and the gap
between the mean accuracies.

    python examples/benchmark_forget.py --seed 1 --repeats 1 --out results/benchmark_forget_seed1.json
    python examples/forget_across_seeds.py results/benchmark_forget.json results/benchmark_forget_seed1.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def class_gaps(runs: list[dict]) -> list[dict]:
    """Per class: SISA and monolithic retained accuracy (%) for each run, and the gaps."""
    rows = []
    for per_run in zip(*(run["classes"] for run in runs)):
        sisa = [100 * r["retained_accuracy"] for r in per_run]
        mono = [100 * r["monolithic_retrain"]["retained_accuracy"] for r in per_run]
        rows.append({
            "class": per_run[0]["class"],
            "retained_accuracy": sisa,
            "monolithic_retrained_accuracy": mono,
            "gap_points": [m - s for m, s in zip(mono, sisa)],
            "gap_of_means_points": float(np.mean(mono) - np.mean(sisa)),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="JSON files written by benchmark_forget.py.")
    parser.add_argument("--out", default="results/forget_across_seeds.json")
    args = parser.parse_args()
    runs = []
    for path in args.runs:
        with open(path) as f:
            runs.append(json.load(f))
    if len({tuple(r["class"] for r in run["classes"]) for run in runs}) != 1:
        raise SystemExit("error: the runs forgot different classes; pass runs made with the same --classes.")
    rows = class_gaps(runs)
    result = {
        "runs": args.runs,
        "seeds": [run["config"]["seed"] for run in runs],
        "classes": rows,
        "mean_gap_points": float(np.mean([r["gap_of_means_points"] for r in rows])),
        "max_gap_of_means_points": float(np.max([r["gap_of_means_points"] for r in rows])),
        "classes_within_1_point_per_run": [int(sum(r["gap_points"][k] <= 1.0 for r in rows))
                                           for k in range(len(runs))],
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    seeds = " ".join(f"{'seed ' + str(s):>7}" for s in result["seeds"])
    print(f"{'class':<12} {'retained (mean)':>15} {'mono (mean)':>11} {'gap':>6}   gap by run: {seeds}")
    for r in rows:
        gaps = " ".join(f"{g:>7.2f}" for g in r["gap_points"])
        print(f"{r['class']:<12} {np.mean(r['retained_accuracy']):>14.2f}% "
              f"{np.mean(r['monolithic_retrained_accuracy']):>10.2f}% {r['gap_of_means_points']:>6.2f}"
              f"   {' ' * 12}{gaps}")
    print(f"gap of the means: mean {result['mean_gap_points']:.2f}, worst "
          f"{result['max_gap_of_means_points']:.2f} points (goal <= 1.0 for each class); classes within "
          f"1.0 in each run: {result['classes_within_1_point_per_run']}")


if __name__ == "__main__":
    main()
