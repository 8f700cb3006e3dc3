"""Benchmark: accuracy against class-forget cost, for the gate and shard choices a user can make.

Routing bounds the ensemble's accuracy, and a class forget retrains the gate, so a
stronger gate or fewer, larger shards buy accuracy with forget time. On each data size
and seed this fits the early-stopped plain CNN (`monolithic.py`), then keras-sisa once per
variant, and reports test and routing accuracy, fit time, the expected class-forget
cost of every class (`info()["expected_forget_seconds"]`: the training a forget redoes,
priced by the slices' fit times) and one measured class forget, all divided by the plain
CNN's fit on all classes (a retrain without one class trains on a tenth fewer images).

    python examples/benchmark_tradeoff.py --sizes 1000/class --seeds 0,1,2 \\
        --out results/benchmark_tradeoff_1000.json
    python examples/benchmark_tradeoff.py --sizes full --variants "default,small_gate,default_cnn gate" \\
        --out results/benchmark_tradeoff_full.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np

import keras_sisa
from keras_sisa import data as sources

from benchmark_accuracy import over_seeds, plain_cnn
import result_file

# The default is strided_gate with one shard per two classes.
VARIANTS = {
    "default": {},
    "small_gate": {"gate_fn": "keras_sisa.models:small_gate"},
    "default_cnn gate": {"gate_fn": "keras_sisa.models:default_cnn"},
    "2 shards": {"shards": 2},
}
SIZES = {"1000/class": 1000, "full": None}


def variant(dataset, options: dict, seed: int, forgotten: int) -> dict:
    """Fits one variant, evaluates it, reads its expected forget costs, then forgets one class."""
    directory = tempfile.mkdtemp(prefix="sisa-tradeoff-bench-")
    shutil.rmtree(directory)
    try:
        classifier = keras_sisa.SISAClassifier(directory, seed=seed, **options)
        started = time.perf_counter()
        classifier.fit(dataset.x_train, dataset.y_train, dataset.class_names, sample_ids=dataset.ids, verbose=0)
        seconds = time.perf_counter() - started
        report = classifier.evaluate(dataset.x_test, dataset.y_test)
        expected = classifier.info()["expected_forget_seconds"]
        started = time.perf_counter()
        classifier.forget(classes=[forgotten], verbose=0, audit=False)
        forget_seconds = time.perf_counter() - started
        return {"accuracy": report["accuracy"], "routing_accuracy": report["routing_accuracy"],
                "seconds": seconds, "expected_forget_seconds": expected,
                "forgotten": dataset.class_names[forgotten], "forget_seconds": forget_seconds}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def ratios(fit: dict, plain: dict) -> dict:
    """A variant's fit and class-forget costs over the plain CNN's fit at the same seed."""
    costs = np.asarray(list(fit["expected_forget_seconds"].values())) / plain["seconds"]
    return {"fit_time_ratio": fit["seconds"] / plain["seconds"],
            "expected_class_forget_mean": float(costs.mean()), "expected_class_forget_max": float(costs.max()),
            "measured_class_forget": fit["forget_seconds"] / plain["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/benchmark_tradeoff.json")
    parser.add_argument("--sizes", default=",".join(SIZES), help="Comma-separated data sizes (default: all).")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="Comma-separated variants (default: all).")
    parser.add_argument("--seeds", default="0", help="Seeds of every row: accuracies are means, ratios medians.")
    parser.add_argument("--forget-class", type=int, default=0, help="The class each variant forgets once.")
    args = parser.parse_args()

    fashion = sources.load()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for size in args.sizes.split(","):
        limit = SIZES[size]
        dataset = fashion if limit is None else sources.limit_per_class(fashion, limit)
        plains = [plain_cnn(dataset, seed) for seed in seeds]
        plain = over_seeds(plains)
        print(f"{size}: plain {100 * plain['accuracy']:.2f}% in {plain['seconds']:.1f} s", flush=True)
        for name in args.variants.split(","):
            fits = [variant(dataset, VARIANTS[name], seed, args.forget_class) for seed in seeds]
            costs = [ratios(fit, p) for fit, p in zip(fits, plains)]
            ensemble = over_seeds(fits)
            rows.append({"data": size, "variant": name, "seeds": seeds, "plain_cnn": plain, "sisa": ensemble,
                         "accuracy_gap_points": 100 * (plain["accuracy"] - ensemble["accuracy"]),
                         **{key: float(np.median([c[key] for c in costs])) for key in costs[0]}})
            print(f"  {name}: {100 * ensemble['accuracy']:.2f}% in {ensemble['seconds']:.1f} s, forget "
                  f"{fits[0]['forgotten']} {np.median([f['forget_seconds'] for f in fits]):.1f} s", flush=True)

    result = {**result_file.stamp("tradeoff"), "rows": rows}
    result_file.write(args.out, result)
    print(f"\n{'data':<11} {'variant':<20} {'plain':>7} {'sisa':>7} {'routing':>8} {'gap':>6} {'fit':>6} "
          f"{'forget mean':>11} {'max':>6} {'measured':>9}")
    for r in rows:
        s = r["sisa"]
        print(f"{r['data']:<11} {r['variant']:<20} {100 * r['plain_cnn']['accuracy']:>6.2f}% "
              f"{100 * s['accuracy']:>6.2f}% {100 * s['routing_accuracy']:>7.2f}% {r['accuracy_gap_points']:>6.2f} "
              f"{r['fit_time_ratio']:>5.2f}x {r['expected_class_forget_mean']:>10.3f}x "
              f"{r['expected_class_forget_max']:>5.3f}x {r['measured_class_forget']:>8.3f}x")
    print("costs: expected training seconds of a class forget (mean and max over classes) and one measured "
          "forget, over the plain CNN's fit")


if __name__ == "__main__":
    main()
