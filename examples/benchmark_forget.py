"""Benchmark: exact forgetting of each Fashion-MNIST class against retraining, in one run.

Fits the SISA ensemble once (the default plan, or `--shards` and `--gate-model`); then,
for every class, forgets it from a copy of the fitted run and records the forget wall
time, retained and routing accuracy, where the forgotten class's test images go now,
and a membership-inference AUC. In the same run it retrains the plain CNN without each
class the way a user would (`monolithic.py`: early stopping on a validation split),
refits the whole SISA ensemble without one class, and forgets 100 random samples.

    python examples/benchmark_forget.py --out results/benchmark_forget.json
    python examples/benchmark_forget.py --shards 5 --gate-model keras_sisa.models:strided_gate \\
        --out results/2026-12-02/benchmark_forget.json   # the plan that was the default until 2026-12-03

Wall times on a shared machine are noisy, so each class is forgotten `--repeats`
times and the median kept, and cost ratios divide by the median of the run's
retrains of the plain CNN (each on nine classes' images). `--limit-per-class N` runs it
on N training images per class.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import shutil
import tempfile
import time

import numpy as np

import keras_sisa
from keras_sisa import data as sources, metrics

import monolithic as baseline
import plan_options
import result_file


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
    model, figures = baseline.train(rest.x_train, relabel[rest.y_train], len(retained), seed)
    test = np.isin(dataset.y_test, retained)
    predicted = np.asarray(retained)[baseline.predict(model, dataset.x_test[test])]
    return {**figures, "retained_accuracy": float(np.mean(predicted == dataset.y_test[test]))}


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
        "routing_accuracy": report["routing_accuracy"],
        "forgotten_class_accuracy": float(np.mean(predicted == c)),
        "forgotten_predicted_as": dict(went.most_common()),
        "mia_auc": membership_auc(sisa, dataset.x_train[dataset.y_train == c], gone),
        "rewound": receipt["rewound"],
    }
    shutil.rmtree(run)
    return result


def refit_without(sisa, dataset, c: int, scratch: str, seed: int, options: dict) -> float:
    """Seconds to fit the whole ensemble afresh on the data without class `c`, on the same plan."""
    rest = without(dataset, [c])
    refit = keras_sisa.SISAClassifier(os.path.join(scratch, "refit"), seed=seed, **options)
    started = time.perf_counter()
    refit.fit(rest.x_train, rest.y_train, dataset.class_names, sample_ids=rest.ids,
              plan=sisa.plan.without(dataset.ids[dataset.y_train == c], [c]), verbose=0)
    return time.perf_counter() - started


def forget_samples(fitted_dir: str, scratch: str, dataset, count: int, seed: int) -> dict:
    """Forgets `count` random training images from a copy of the fitted run."""
    chosen = np.random.default_rng(seed).choice(dataset.ids, count, replace=False)
    run = os.path.join(scratch, "samples")
    shutil.copytree(fitted_dir, run)
    sampled = keras_sisa.load(run)
    started = time.perf_counter()
    receipt = sampled.forget(samples=chosen.tolist(), verbose=0, audit=False)
    return {"count": count, "forget_seconds": time.perf_counter() - started,
            "retained_accuracy": sampled.evaluate()["accuracy"], "rewound": receipt["rewound"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/benchmark_forget.json")
    parser.add_argument("--classes", default=None, help="Comma-separated class indices (default: all).")
    parser.add_argument("--samples", type=int, default=100, help="Random samples to delete (0: skip).")
    parser.add_argument("--skip-refit", action="store_true", help="Skip refitting the ensemble without a class.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="Forgets of each class; the median is kept.")
    parser.add_argument("--limit-per-class", type=int, default=None, help="Training images per class (default: all).")
    plan_options.add_to(parser)
    args = parser.parse_args()
    options = plan_options.chosen(args)

    dataset = sources.load(limit=args.limit_per_class)
    classes = [int(c) for c in args.classes.split(",")] if args.classes else range(len(dataset.class_names))
    scratch = tempfile.mkdtemp(prefix="sisa-forget-bench-")
    try:
        fitted_dir = os.path.join(scratch, "fitted")
        sisa = keras_sisa.SISAClassifier(fitted_dir, seed=args.seed, **options)
        sisa.fit(dataset.x_train, dataset.y_train, dataset.class_names,
                 test_data=(dataset.x_test, dataset.y_test), sample_ids=dataset.ids, verbose=0)
        evaluation = sisa.evaluate()
        fit = {"seconds": sisa.manifest["fit_seconds"], "accuracy": evaluation["accuracy"],
               "routing_accuracy": evaluation["routing_accuracy"]}
        rows = []
        for c in classes:
            row = forget_class(fitted_dir, scratch, dataset, c, args.repeats)
            row["monolithic_retrain"] = monolithic_retrain(dataset, [c], args.seed)
            rows.append(row)
            print(f"forgot {row['class']}: {row['forget_seconds']:.1f} s", flush=True)

        sisa_refit_seconds = (None if args.skip_refit
                              else refit_without(sisa, dataset, classes[0], scratch, args.seed, options))
        samples_row = forget_samples(fitted_dir, scratch, dataset, args.samples, args.seed) if args.samples else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    mono_median = float(np.median([r["monolithic_retrain"]["seconds"] for r in rows]))
    for row in rows:
        row["cost_vs_monolithic"] = row["forget_seconds"] / mono_median
        row["cost_vs_own_monolithic_retrain"] = row["forget_seconds"] / row["monolithic_retrain"]["seconds"]
        row["cost_vs_sisa_refit"] = row["forget_seconds"] / sisa_refit_seconds if sisa_refit_seconds else None
        row["accuracy_gap_points"] = 100 * (row["monolithic_retrain"]["retained_accuracy"]
                                            - row["retained_accuracy"])
    if samples_row:
        samples_row["cost_vs_monolithic"] = samples_row["forget_seconds"] / mono_median
        samples_row["cost_vs_sisa_refit"] = (samples_row["forget_seconds"] / sisa_refit_seconds
                                             if sisa_refit_seconds else None)
    result = {
        **result_file.stamp("forget"),
        "dataset": f"fashion_mnist ({len(dataset.y_train)} train / {len(dataset.y_test)} test)",
        "config": dataclasses.asdict(sisa.config),
        "options": options,
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
        "mean_cost_vs_sisa_refit": (float(np.mean([r["cost_vs_sisa_refit"] for r in rows]))
                                    if sisa_refit_seconds else None),
        "max_accuracy_gap_points": float(np.max([r["accuracy_gap_points"] for r in rows])),
        "max_mia_distance": float(np.max([abs(v - 0.5) for r in rows for v in r["mia_auc"].values()])),
    }
    result_file.write(args.out, result)
    refit_text = f"SISA refit without {rows[0]['class']}: {sisa_refit_seconds:.1f} s; " if sisa_refit_seconds else ""
    print(f"\nSISA fit {fit['seconds']:.1f} s, accuracy {100 * fit['accuracy']:.2f}%; {refit_text}"
          f"median early-stopped plain CNN retrain {mono_median:.1f} s")
    ratio = lambda value: f"{value:>7.2f}" if value is not None else f"{'-':>7}"
    print(f"{'class':<12} {'forget s':>8} {'plain s':>7} {'x plain':>7} {'x refit':>7} {'retained':>8} "
          f"{'plain':>8} {'forg acc':>8} {'MIA conf':>8} {'MIA ent':>8}  predicted as")
    for r in rows:
        top = ", ".join(f"{k} {v}" for k, v in list(r["forgotten_predicted_as"].items())[:2])
        print(f"{r['class']:<12} {r['forget_seconds']:>8.1f} {r['monolithic_retrain']['seconds']:>7.1f} "
              f"{r['cost_vs_monolithic']:>7.2f} {ratio(r['cost_vs_sisa_refit'])} "
              f"{100 * r['retained_accuracy']:>7.2f}% {100 * r['monolithic_retrain']['retained_accuracy']:>7.2f}% "
              f"{100 * r['forgotten_class_accuracy']:>7.1f}% {r['mia_auc']['confidence']:>8.3f} "
              f"{r['mia_auc']['negative_entropy']:>8.3f}  {top}")
    if samples_row:
        s = samples_row
        print(f"{args.samples} random samples: {s['forget_seconds']:.1f} s ({s['cost_vs_monolithic']:.2f}x the plain "
              f"retrain), retained {100 * s['retained_accuracy']:.2f}%")
    print(f"mean cost {result['mean_cost_vs_monolithic']:.3f}x the plain retrain (goal <= 0.10), max "
          f"{result['max_cost_vs_monolithic']:.3f}x (goal <= 0.30); against each class's own retrain: mean "
          f"{result['mean_cost_vs_own_monolithic_retrain']:.2f}x, max "
          f"{result['max_cost_vs_own_monolithic_retrain']:.2f}x; worst accuracy gap "
          f"{result['max_accuracy_gap_points']:.2f} points (goal <= 1.0); worst |MIA AUC - 0.5| "
          f"{result['max_mia_distance']:.3f} (goal <= 0.05)")


if __name__ == "__main__":
    main()
