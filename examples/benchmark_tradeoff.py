"""Benchmark: accuracy against forget cost, for the gate and shard choices a user can make.

Routing bounds the ensemble's accuracy, and a class forget retrains the gate, so a
stronger gate or fewer, larger shards buy accuracy with forget time; one shard per class
leaves only the gate to train, so every forget is cheap and the gate alone classifies.
On each data row (benchmark_accuracy's) and seed this fits the early-stopped plain CNN
(`monolithic.py`), then keras-sisa once per variant, and reports test and routing
accuracy, fit time, the expected class-forget cost of every class
(`info()["expected_forget_seconds"]`: the training a forget redoes, priced by the slices'
fit times), one measured class forget and then one measured forget of 100 random images
(which reach every component), all divided by the plain CNN's fit on all classes.

    python examples/benchmark_tradeoff.py --rows "fashion_mnist full" --out results/benchmark_tradeoff_full.json
    python examples/benchmark_tradeoff.py --rows "fashion_mnist 1000/class" --seeds 0,1,2 \\
        --out results/benchmark_tradeoff_1000.json
    python examples/benchmark_tradeoff.py --rows "fashion_mnist 100/class,fashion_mnist 300/class,\\
        32x32x3 tinted 1000/class,16x16 300/class" --variants "5 shards,10 shards + default_cnn gate" \\
        --seeds 0,1,2 --out results/benchmark_tradeoff_rows.json
    python examples/benchmark_tradeoff.py --rows "fashion_mnist full" --variants "5 shards + check_steps 192,\\
        10 shards + default_cnn gate + check_steps 192" --out results/benchmark_tradeoff_check_steps.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from keras_sisa import data as sources

from benchmark_accuracy import ROWS, fitted, over_seeds, plain_cnn, row_data
import result_file

STRIDED, SMALL = "keras_sisa.models:strided_gate", "keras_sisa.models:small_gate"
# Plans spelled out for Fashion-MNIST's 10 classes; the default is "10 shards + default_cnn
# gate", and "5 shards" the default before 2026-12-03 (called "default" in files written
# before then, which also leave "5 shards" out of the other names).
VARIANTS = {
    "5 shards": {"shards": 5, "gate_fn": STRIDED},
    "5 shards + small_gate": {"shards": 5, "gate_fn": SMALL},
    "5 shards + default_cnn gate": {"shards": 5},
    "2 shards": {"shards": 2, "gate_fn": STRIDED},
    "10 shards": {"shards": 10, "gate_fn": STRIDED},
    "10 shards + small_gate": {"shards": 10, "gate_fn": SMALL},
    "10 shards + default_cnn gate": {"shards": 10},
    # Held-out checks every 192 steps instead of 64: later stops, on slices over 64 steps.
    "5 shards + check_steps 192": {"shards": 5, "gate_fn": STRIDED, "check_steps": 192},
    "10 shards + default_cnn gate + check_steps 192": {"shards": 10, "check_steps": 192},
}


def variant(dataset, options: dict, seed: int, forgotten: int, samples: int) -> dict:
    """Fits one variant, evaluates it, reads its expected forget costs, then forgets one class
    and then `samples` random images of the others."""
    with fitted(dataset, seed, options) as (classifier, figures):
        expected = classifier.info()["expected_forget_seconds"]
        started = time.perf_counter()
        classifier.forget(classes=[forgotten], verbose=0, audit=False)
        forget_seconds = time.perf_counter() - started
        left = dataset.ids[dataset.y_train != forgotten]
        chosen = np.random.default_rng(seed).choice(left, samples, replace=False)
        started = time.perf_counter()
        classifier.forget(samples=chosen.tolist(), verbose=0, audit=False)
        random_seconds = time.perf_counter() - started
        return {**figures, "expected_forget_seconds": expected,
                "forgotten": dataset.class_names[forgotten], "forget_seconds": forget_seconds,
                "random_images": samples, "random_forget_seconds": random_seconds}


def ratios(fit: dict, plain: dict) -> dict:
    """A variant's fit and class-forget costs over the plain CNN's fit at the same seed."""
    costs = np.asarray(list(fit["expected_forget_seconds"].values())) / plain["seconds"]
    return {"fit_time_ratio": fit["seconds"] / plain["seconds"],
            "expected_class_forget_mean": float(costs.mean()), "expected_class_forget_max": float(costs.max()),
            "measured_class_forget": fit["forget_seconds"] / plain["seconds"],
            "measured_random_forget": fit["random_forget_seconds"] / plain["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/benchmark_tradeoff.json")
    parser.add_argument("--rows", default=",".join(ROWS), help="Comma-separated data rows of benchmark_accuracy "
                        "(default: all).")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="Comma-separated variants (default: all).")
    parser.add_argument("--seeds", default="0", help="Seeds of every row: accuracies are means, ratios medians.")
    parser.add_argument("--forget-class", type=int, default=0, help="The class each variant forgets once.")
    parser.add_argument("--samples", type=int, default=100, help="Random images each variant then forgets.")
    args = parser.parse_args()

    fashion = sources.load()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for data in (name.strip() for name in args.rows.split(",")):
        dataset = row_data(fashion, data)
        plains = [plain_cnn(dataset, seed) for seed in seeds]
        plain = over_seeds(plains)
        print(f"{data}: plain {100 * plain['accuracy']:.2f}% in {plain['seconds']:.1f} s", flush=True)
        for name in (variant_name.strip() for variant_name in args.variants.split(",")):
            fits = [variant(dataset, VARIANTS[name], seed, args.forget_class, args.samples) for seed in seeds]
            costs = [ratios(fit, p) for fit, p in zip(fits, plains)]
            ensemble = over_seeds(fits)
            rows.append({"data": data, "variant": name, "seeds": seeds, "plain_cnn": plain, "sisa": ensemble,
                         "accuracy_gap_points": 100 * (plain["accuracy"] - ensemble["accuracy"]),
                         **{key: float(np.median([c[key] for c in costs])) for key in costs[0]}})
            print(f"  {name}: {100 * ensemble['accuracy']:.2f}% in {ensemble['seconds']:.1f} s, forget "
                  f"{fits[0]['forgotten']} {np.median([f['forget_seconds'] for f in fits]):.1f} s, "
                  f"{args.samples} random images {np.median([f['random_forget_seconds'] for f in fits]):.1f} s",
                  flush=True)

    result = {**result_file.stamp("tradeoff"), "rows": rows}
    result_file.write(args.out, result)
    print(f"\n{'data':<26} {'variant':<46} {'plain':>7} {'sisa':>7} {'routing':>8} {'gap':>6} {'fit':>6} "
          f"{'forget mean':>11} {'max':>6} {'measured':>9} {'random':>7}")
    for r in rows:
        s = r["sisa"]
        print(f"{r['data']:<26} {r['variant']:<46} {100 * r['plain_cnn']['accuracy']:>6.2f}% "
              f"{100 * s['accuracy']:>6.2f}% {100 * s['routing_accuracy']:>7.2f}% {r['accuracy_gap_points']:>6.2f} "
              f"{r['fit_time_ratio']:>5.2f}x {r['expected_class_forget_mean']:>10.3f}x "
              f"{r['expected_class_forget_max']:>5.3f}x {r['measured_class_forget']:>8.3f}x "
              f"{r['measured_random_forget']:>6.3f}x")
    print(f"costs: expected training seconds of a class forget (mean and max over classes), one measured class "
          f"forget and one of {args.samples} random images, over the plain CNN's fit")


if __name__ == "__main__":
    main()
