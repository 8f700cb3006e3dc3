"""Benchmark: a monolithic CNN against the SISA ensemble on Fashion-MNIST, in one run.

Trains the default architecture as one model (the baseline's fixed recipe,
`monolithic.py`) and as a SISA ensemble with its default settings (5 shards), then
writes test accuracy and fit wall time to a JSON file and prints a table.

Wall times here are noisy (the same monolithic fit took 42.8 s and 56.6 s in two runs),
so the two fits alternate `--repeats` times and the median times are kept; the weights,
hence the accuracies, are the same every time.

    python examples/benchmark_fit.py --out examples/benchmark_fit.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time

import numpy as np

import keras_sisa
from keras_sisa import data as sources

import monolithic as baseline


def monolithic(dataset, seed: int) -> dict:
    """The default CNN trained on all classes at once: the baseline SISA is measured against."""
    model, seconds = baseline.train(dataset.x_train, dataset.y_train, len(dataset.class_names), seed)
    predicted = baseline.predict(model, dataset.x_test)
    return {"accuracy": float(np.mean(predicted == dataset.y_test)), "fit_seconds": seconds}


def sisa(dataset, directory: str, shards: int, seed: int) -> dict:
    classifier = keras_sisa.SISAClassifier(directory, shards=shards, seed=seed)
    started = time.perf_counter()
    classifier.fit(dataset.x_train, dataset.y_train, dataset.class_names,
                   test_data=(dataset.x_test, dataset.y_test), sample_ids=dataset.ids, verbose=0)
    seconds = time.perf_counter() - started
    report = classifier.evaluate()
    return {"accuracy": report["accuracy"], "fit_seconds": seconds,
            "component_seconds": classifier.manifest["component_seconds"],
            "per_class": report["per_class"],
            "config": {"shards": shards, **dataclasses.asdict(classifier.config)}}


def with_median_time(runs: list[dict]) -> dict:
    """The figures of repeated fits with their median fit time; they must agree on accuracy."""
    if len({r["accuracy"] for r in runs}) != 1:
        raise RuntimeError(f"Repeated fits gave different accuracies: {[r['accuracy'] for r in runs]}.")
    seconds = [r["fit_seconds"] for r in runs]
    median = float(np.median(seconds))
    return {**runs[-1], "fit_seconds": median, "fit_seconds_runs": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/benchmark_fit.json")
    parser.add_argument("--shards", type=int, default=5)
    parser.add_argument("--limit-per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="Fits of each model; the median time is kept.")
    args = parser.parse_args()

    dataset = sources.load(limit=args.limit_per_class)
    monos, ensembles = [], []
    for _ in range(args.repeats):
        monos.append(monolithic(dataset, args.seed))
        run = tempfile.mkdtemp(prefix="sisa-bench-")
        shutil.rmtree(run)
        try:
            ensembles.append(sisa(dataset, run, args.shards, args.seed))
        finally:
            shutil.rmtree(run, ignore_errors=True)
    mono, ensemble = with_median_time(monos), with_median_time(ensembles)
    result = {
        "benchmark": "fit",
        "dataset": f"fashion_mnist ({len(dataset.y_train)} train / {len(dataset.y_test)} test)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d"),
        "repeats": args.repeats,
        "monolithic": mono,
        "sisa": ensemble,
        "accuracy_gap_points": 100 * (mono["accuracy"] - ensemble["accuracy"]),
        "fit_time_ratio": ensemble["fit_seconds"] / mono["fit_seconds"],
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"{'model':<12} {'test acc':>9} {'fit s':>8}")
    for name in ("monolithic", "sisa"):
        row = result[name]
        print(f"{name:<12} {100 * row['accuracy']:>8.2f}% {row['fit_seconds']:>8.1f}")
    print(f"accuracy gap {result['accuracy_gap_points']:.2f} points (goal <= 1.0); "
          f"fit time {result['fit_time_ratio']:.2f}x (goal <= 2.0x)")


if __name__ == "__main__":
    main()
