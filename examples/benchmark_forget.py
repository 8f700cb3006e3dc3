"""Benchmark: exact forgetting of each Fashion-MNIST class against retraining, in one run.

Fits the default SISA ensemble once; then, for every class, forgets it from a copy
of the fitted run and records the forget wall time, retained accuracy, where the
forgotten class's test images go now, and a membership-inference AUC. In the same
run it retrains the monolithic model without each class, refits the whole SISA
ensemble without one class, and forgets 100 random samples.

    python examples/benchmark_forget.py --out examples/benchmark_forget.json
    python examples/benchmark_forget.py --gate-replay-ratio 1.5 --repeats 1 --out examples/benchmark_forget_fast.json

Wall times on a shared machine are noisy (one monolithic retrain varied from 38 s to
63 s within a run), so each class is forgotten `--repeats` times and the median kept,
and cost ratios divide by the median of the run's ten monolithic retrains, each the
same model on 54,000 images.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time

import numpy as np

import keras_sisa
from keras_sisa import data as sources, metrics
from keras_sisa.cli.main import parse_epochs

import monolithic as baseline


def without(dataset, classes=(), sample_ids=()):
    keep = ~np.isin(dataset.y_train, list(classes)) & ~np.isin(dataset.ids, list(sample_ids))
    return dataclasses.replace(dataset, x_train=dataset.x_train[keep], y_train=dataset.y_train[keep],
                               ids=dataset.ids[keep])


def monolithic_retrain(dataset, forgotten: list[int], seed: int) -> dict:
    """The default CNN trained from scratch on the retained classes only: the gold standard."""
    rest = without(dataset, forgotten)
    retained = [c for c in range(len(dataset.class_names)) if c not in forgotten]
    relabel = np.full(len(dataset.class_names), -1)
    relabel[retained] = np.arange(len(retained))
    model, seconds = baseline.train(rest.x_train, relabel[rest.y_train], len(retained), seed)
    test = np.isin(dataset.y_test, retained)
    predicted = np.asarray(retained)[baseline.predict(model, dataset.x_test[test])]
    return {"seconds": seconds, "retained_accuracy": float(np.mean(predicted == dataset.y_test[test]))}


def membership_auc(sisa, members: np.ndarray, non_members: np.ndarray) -> dict:
    """Confidence and entropy attacks: members = deleted training images, non-members = test images."""
    scored = [metrics.membership_scores(sisa.predict(images)) for images in (members, non_members)]
    return {score: metrics.auc(scored[0][score], scored[1][score]) for score in scored[0]}


def forget_class(fitted_dir: str, scratch: str, dataset, c: int, repeats: int) -> dict:
    """Forgets class `c` from `repeats` fresh copies of the fitted run (the same weights each
    time); the forget time is their median, and the last copy is measured."""
    runs = []
    for _ in range(repeats):
        run = os.path.join(scratch, f"forget-{c}")
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(fitted_dir, run)
        sisa = keras_sisa.load(run)
        started = time.perf_counter()
        receipt = sisa.forget(classes=[c], verbose=0, audit=False)  # the MIA below uses every image
        runs.append(time.perf_counter() - started)
    report = sisa.evaluate(dataset.x_test, dataset.y_test)
    gone = dataset.x_test[dataset.y_test == c]
    predicted = np.asarray(sisa.classes)[np.argmax(sisa.predict(gone), axis=1)]
    went = collections.Counter(dataset.class_names[p] for p in predicted)
    result = {
        "class": dataset.class_names[c],
        "forget_seconds": float(np.median(runs)),
        "forget_seconds_runs": runs,
        "retained_accuracy": report["accuracy"],
        "forgotten_class_accuracy": float(np.mean(predicted == c)),
        "forgotten_predicted_as": dict(went.most_common()),
        "mia_auc": membership_auc(sisa, dataset.x_train[dataset.y_train == c], gone),
        "rewound": receipt["rewound"],
    }
    shutil.rmtree(run)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/benchmark_forget.json")
    parser.add_argument("--classes", default=None, help="Comma-separated class indices (default: all).")
    parser.add_argument("--samples", type=int, default=100, help="Random samples to delete.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="Forgets of each class; the median is kept.")
    parser.add_argument("--gate-epochs", default=None,
                        help="Gate epochs, or a schedule by slice position such as 2,2,2,2,2,1.")
    parser.add_argument("--gate-replay-ratio", type=float, default=None)
    parser.add_argument("--gate-ema", type=float, default=None, help="0 trains the gate without averaging.")
    args = parser.parse_args()
    gate_settings = {}
    if args.gate_replay_ratio is not None:
        gate_settings["gate_replay_ratio"] = args.gate_replay_ratio
    if args.gate_ema is not None:
        gate_settings["gate_ema"] = args.gate_ema
    if args.gate_epochs is not None:
        gate_settings["gate_epochs"] = parse_epochs(args.gate_epochs, "--gate-epochs")

    dataset = sources.load()
    classes = [int(c) for c in args.classes.split(",")] if args.classes else range(len(dataset.class_names))
    scratch = tempfile.mkdtemp(prefix="sisa-forget-bench-")
    try:
        fitted_dir = os.path.join(scratch, "fitted")
        sisa = keras_sisa.SISAClassifier(fitted_dir, seed=args.seed, **gate_settings)
        sisa.fit(dataset.x_train, dataset.y_train, dataset.class_names,
                 test_data=(dataset.x_test, dataset.y_test), sample_ids=dataset.ids, verbose=0)
        fit = {"seconds": sisa.manifest["fit_seconds"], "accuracy": sisa.evaluate()["accuracy"]}
        rows = []
        for c in classes:
            row = forget_class(fitted_dir, scratch, dataset, c, args.repeats)
            row["monolithic_retrain"] = monolithic_retrain(dataset, [c], args.seed)
            rows.append(row)
            print(f"forgot {row['class']}: {row['forget_seconds']:.1f} s", flush=True)

        first = classes[0]
        refit_dir = os.path.join(scratch, "refit")
        refit = keras_sisa.SISAClassifier(refit_dir, seed=args.seed, **gate_settings)
        rest = without(dataset, [first])
        started = time.perf_counter()
        deleted = dataset.ids[dataset.y_train == first]
        refit.fit(rest.x_train, rest.y_train, dataset.class_names, sample_ids=rest.ids,
                  plan=sisa.plan.without(deleted, [first]), verbose=0)
        sisa_refit_seconds = time.perf_counter() - started

        chosen = np.random.default_rng(args.seed).choice(dataset.ids, args.samples, replace=False)
        run = os.path.join(scratch, "samples")
        shutil.copytree(fitted_dir, run)
        sampled = keras_sisa.load(run)
        started = time.perf_counter()
        receipt = sampled.forget(samples=chosen.tolist(), verbose=0, audit=False)
        samples_row = {"count": args.samples, "forget_seconds": time.perf_counter() - started,
                       "retained_accuracy": sampled.evaluate()["accuracy"],
                       "rewound": receipt["rewound"]}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    mono_median = float(np.median([r["monolithic_retrain"]["seconds"] for r in rows]))
    for row in rows:
        row["cost_vs_monolithic"] = row["forget_seconds"] / mono_median
        row["cost_vs_own_monolithic_retrain"] = row["forget_seconds"] / row["monolithic_retrain"]["seconds"]
        row["cost_vs_sisa_refit"] = row["forget_seconds"] / sisa_refit_seconds
        row["accuracy_gap_points"] = 100 * (row["monolithic_retrain"]["retained_accuracy"]
                                            - row["retained_accuracy"])
    samples_row["cost_vs_monolithic"] = samples_row["forget_seconds"] / mono_median
    samples_row["cost_vs_sisa_refit"] = samples_row["forget_seconds"] / sisa_refit_seconds
    result = {
        "benchmark": "forget",
        "dataset": f"fashion_mnist ({len(dataset.y_train)} train / {len(dataset.y_test)} test)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d"),
        "config": dataclasses.asdict(sisa.config),
        "forget_repeats": args.repeats,
        "fit": fit,
        "monolithic_retrain_median_seconds": mono_median,
        "sisa_refit_seconds": sisa_refit_seconds,
        "classes": rows,
        "samples": samples_row,
        "mean_cost_vs_monolithic": float(np.mean([r["cost_vs_monolithic"] for r in rows])),
        "max_cost_vs_monolithic": float(np.max([r["cost_vs_monolithic"] for r in rows])),
        "mean_cost_vs_own_monolithic_retrain": float(np.mean([r["cost_vs_own_monolithic_retrain"] for r in rows])),
        "max_cost_vs_own_monolithic_retrain": float(np.max([r["cost_vs_own_monolithic_retrain"] for r in rows])),
        "mean_cost_vs_sisa_refit": float(np.mean([r["cost_vs_sisa_refit"] for r in rows])),
        "max_accuracy_gap_points": float(np.max([r["accuracy_gap_points"] for r in rows])),
        "max_mia_distance": float(np.max([abs(v - 0.5) for r in rows for v in r["mia_auc"].values()])),
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nSISA fit {fit['seconds']:.1f} s, accuracy {100 * fit['accuracy']:.2f}%; "
          f"SISA refit without {rows[0]['class']}: {sisa_refit_seconds:.1f} s; "
          f"median monolithic retrain {mono_median:.1f} s")
    print(f"{'class':<12} {'forget s':>8} {'mono s':>7} {'x mono':>7} {'x refit':>7} {'retained':>8} "
          f"{'mono ret':>8} {'forg acc':>8} {'MIA conf':>8} {'MIA ent':>8}  predicted as")
    for r in rows:
        top = ", ".join(f"{k} {v}" for k, v in list(r["forgotten_predicted_as"].items())[:2])
        print(f"{r['class']:<12} {r['forget_seconds']:>8.1f} {r['monolithic_retrain']['seconds']:>7.1f} "
              f"{r['cost_vs_monolithic']:>7.2f} {r['cost_vs_sisa_refit']:>7.2f} "
              f"{100 * r['retained_accuracy']:>7.2f}% {100 * r['monolithic_retrain']['retained_accuracy']:>7.2f}% "
              f"{100 * r['forgotten_class_accuracy']:>7.1f}% {r['mia_auc']['confidence']:>8.3f} "
              f"{r['mia_auc']['negative_entropy']:>8.3f}  {top}")
    s = samples_row
    print(f"{args.samples} random samples: {s['forget_seconds']:.1f} s ({s['cost_vs_monolithic']:.2f}x mono, "
          f"{s['cost_vs_sisa_refit']:.2f}x SISA refit), retained {100 * s['retained_accuracy']:.2f}%")
    print(f"mean cost {result['mean_cost_vs_monolithic']:.2f}x mono (goal <= 0.20), max "
          f"{result['max_cost_vs_monolithic']:.2f}x (goal <= 0.60); against each class's own retrain: mean "
          f"{result['mean_cost_vs_own_monolithic_retrain']:.2f}x, max "
          f"{result['max_cost_vs_own_monolithic_retrain']:.2f}x; worst accuracy gap "
          f"{result['max_accuracy_gap_points']:.2f} points (goal <= 1.0); worst |MIA AUC - 0.5| "
          f"{result['max_mia_distance']:.3f} (goal <= 0.05)")


if __name__ == "__main__":
    main()
