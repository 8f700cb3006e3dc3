"""Prints the README's benchmark table from the benchmarks' JSON files in results/.

    python examples/readme_table.py

Every figure comes from a file a benchmark wrote, so the README cannot drift from them.
"""

import argparse
import json
import os
import re
import statistics

DATA = {"fashion_mnist 100/class": "Fashion-MNIST, 100 per class", "fashion_mnist 300/class": "300 per class",
        "fashion_mnist 1000/class": "1,000 per class", "fashion_mnist full": "full (60,000)",
        "32x32x3 tinted 1000/class": "32x32 colour, 1,000 per class", "16x16 300/class": "16x16, 300 per class"}


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def accuracy_rows(result: dict) -> list[tuple]:
    rows = []
    for row in result["rows"]:
        plain, sisa = row["plain_cnn"], row["sisa"]
        epochs = statistics.median(r["epochs"] for r in plain["runs"])
        rows.append((f"accuracy, {DATA.get(row['data'], row['data'])}", percent(sisa["accuracy"]),
                     f"{percent(plain['accuracy'])} ({epochs:g} epochs)", f"{-row['accuracy_gap_points']:+.2f} points",
                     f"routing {percent(statistics.mean(r['routing_accuracy'] for r in sisa['runs']))}; fit "
                     f"{sisa['seconds']:.0f} s vs {plain['seconds']:.0f} s ({row['fit_time_ratio']:.2f}x)"))
    return rows


def forget_rows(result: dict) -> list[tuple]:
    classes = result["classes"]
    forgets = [c["forget_seconds"] for c in classes]
    gaps = [c["accuracy_gap_points"] for c in classes]
    return [(f"forget a class ({len(classes)} of 10, full data), mean", f"{statistics.mean(forgets):.1f} s",
             f"retrain {result['monolithic_retrain_median_seconds']:.0f} s",
             f"{result['mean_cost_vs_monolithic']:.3f}x (worst {result['max_cost_vs_monolithic']:.3f}x)",
             f"retained accuracy {-max(gaps):+.2f} to {-min(gaps):+.2f} points; forgotten class "
             f"{100 * max(c['forgotten_class_accuracy'] for c in classes):.0f}%")]


def request_rows(result: dict, other_seeds: list[tuple[str, dict]]) -> list[tuple]:
    """The people rows from seed 0's run; the batch row also names the other seeds' ratios."""
    retrain, summary = result["monolithic_retrain"]["seconds"], result["summary"]
    batch_seeds = "".join(f"; seed {seed}: {r['summary']['batch_ratio']:.2f}x" for seed, r in other_seeds)
    stream = [r["seconds"] for r in result["stream"]]
    people = f"{result['owners']['count']:,} people"
    return [
        (f"forget one person ({people}), median of {len(stream)}", f"{statistics.median(stream):.1f} s",
         f"retrain {retrain:.0f} s", f"{summary['single_owner_median_ratio']:.3f}x",
         f"mean {statistics.mean(stream):.1f} s ({summary['single_owner_mean_ratio']:.3f}x)"),
        ("forget 30 people at once", f"{result['batch']['seconds']:.0f} s", f"retrain {retrain:.0f} s",
         f"{summary['batch_ratio']:.2f}x", f"{result['batch']['images']} images{batch_seeds}"),
        (f"forget {result['random']['images']} random images", f"{result['random']['seconds']:.0f} s", f"retrain {retrain:.0f} s",
         f"{summary['random_ratio']:.2f}x", f"after all requests {percent(result['after']['accuracy'])} vs "
         f"{percent(result['monolithic_retrain']['accuracy'])} ({-summary['accuracy_gap_points']:+.2f} points)")]


def export_rows(result: dict) -> list[tuple]:
    int8 = result["variants"]["int8"]
    return [("int8 TFLite export (full data)", f"{int8['bytes'] / 1e6:.1f} MB", "",
             f"{result['int8_size_vs_float32']:.2f}x float32",
             f"agrees with the Keras ensemble on {percent(int8['agreement_with_ensemble'])} of test images")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    args = parser.parse_args()
    read = lambda name: json.load(open(os.path.join(args.results, f"benchmark_{name}.json")))
    found = (re.fullmatch(r"benchmark_requests_seed(\d+)\.json", n) for n in os.listdir(args.results))
    seeds = sorted((m.group(1) for m in found if m), key=int)
    rows = (accuracy_rows(read("accuracy")) + forget_rows(read("forget"))
            + request_rows(read("requests"), [(s, read(f"requests_seed{s}")) for s in seeds])
            + export_rows(read("export")))
    print("| measurement | keras-sisa | plain CNN | keras-sisa vs plain | notes |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
