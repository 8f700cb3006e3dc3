"""Benchmark: what owner tiers trade, accuracy and fit time against the cost of forgetting one owner.

For each tier setting, fits the default ensemble on Fashion-MNIST (`--limit-per-class`
images per class, 0 for all) with owners assigned as in `benchmark_requests.py`, and
records accuracy, routing accuracy, fit time, and the expected training seconds of
forgetting one owner (`keras-sisa info`: each slice priced at what it took to fit) as
mean, median, 90th percentile and most over owners, each divided by the early-stopped
plain CNN's fit time. `--dev-share` scores on a seeded share of each class carved from
the training images instead of the test split, for choosing a setting without looking
at the test set. `--variant tinted` or `16x16` takes the accuracy benchmark's colour or
small images instead.

    python examples/benchmark_owner_tiers.py --out results/benchmark_owner_tiers.json
    python examples/benchmark_owner_tiers.py --limit-per-class 0 --owners 3000 --dev-share 0.1 \
        --settings "0.15,0.05;0.3,0.1" --tier-replay-ratio 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import numpy as np

import keras_sisa
from keras_sisa import data as sources

import monolithic as baseline
import plan_options
from benchmark_accuracy import shrunk, tinted
from benchmark_requests import assign_owners
import result_file

SETTINGS = "none;0.05;0.15,0.05;0.3,0.15,0.05"
#: The image variants of the accuracy benchmark's rows.
VARIANTS = {"grey": lambda d: d, "tinted": tinted, "16x16": shrunk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/benchmark_owner_tiers.json")
    parser.add_argument("--limit-per-class", type=int, default=1000, help="Images per class; 0 for all.")
    parser.add_argument("--owners-per-class", type=int, default=50, help="Owners per class of images.")
    parser.add_argument("--owners", type=int, default=None, help="Owners in all (instead of per class).")
    parser.add_argument("--settings", default=SETTINGS, help="Tier settings, `;`-separated; `none` for no tiers.")
    parser.add_argument("--dev-share", type=float, default=None,
                        help="Score on this share of the training images, held out, instead of the test split.")
    parser.add_argument("--variant", choices=VARIANTS, default="grey",
                        help="Images as they are, padded to 32x32 and tinted, or shrunk to 16x16.")
    parser.add_argument("--seed", type=int, default=0)
    plan_options.add_to(parser)
    args = parser.parse_args()

    dataset = VARIANTS[args.variant](sources.load(limit=args.limit_per_class or None))
    if args.dev_share:
        dataset = dev_split(dataset, args.dev_share, args.seed)
    owners = args.owners or args.owners_per_class * len(dataset.class_names)
    people = [f"owner-{k:05d}" for k in assign_owners(dataset.y_train, owners, args.seed)]
    model, plain = baseline.train(dataset.x_train, dataset.y_train, len(dataset.class_names), args.seed)
    plain["accuracy"] = float(np.mean(baseline.predict(model, dataset.x_test) == dataset.y_test))
    rows = []
    for name in args.settings.split(";"):
        tiers = [] if name == "none" else [float(t) for t in name.split(",")]
        scratch = tempfile.mkdtemp(prefix="sisa-tiers-bench-")
        try:
            sisa = keras_sisa.SISAClassifier(os.path.join(scratch, "run"), owner_tiers=tiers, seed=args.seed,
                                             **plan_options.chosen(args))
            sisa.fit(dataset.x_train, dataset.y_train, dataset.class_names, test_data=(dataset.x_test, dataset.y_test),
                     sample_ids=dataset.ids, owners=people, verbose=0)
            evaluation, cost = sisa.evaluate(), sisa.info()["expected_owner_forget_seconds"]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        rows.append({"tiers": name, "accuracy": evaluation["accuracy"], "routing_accuracy": evaluation["routing_accuracy"],
                     "fit_seconds": sisa.manifest["fit_seconds"], "owner_seconds": cost,
                     **{f"owner_{k}_ratio": cost[k] / plain["seconds"] for k in ("mean", "median", "p90", "max")}})
        print(f"tiers {name}: {100 * evaluation['accuracy']:.2f}%, owner mean {rows[-1]['owner_mean_ratio']:.3f}x",
              flush=True)
    result = {**result_file.stamp("owner_tiers"),
              "dataset": f"fashion_mnist ({args.variant}), {args.limit_per_class or 'all'} per class, {owners} owners",
              "scored_on": f"{args.dev_share} of the training images" if args.dev_share else "the test split",
              "options": plan_options.chosen(args), "monolithic": plain, "rows": rows}
    result_file.write(args.out, result)
    print(f"\nplain CNN: {100 * plain['accuracy']:.2f}% in {plain['seconds']:.1f} s ({plain['epochs']} epochs)")
    print(f"{'tiers':<15} {'accuracy':>8} {'routing':>8} {'fit s':>7} {'x plain':>7} {'owner mean':>10} "
          f"{'median':>7} {'p90':>7} {'most':>7}")
    for r in rows:
        print(f"{r['tiers']:<15} {100 * r['accuracy']:>7.2f}% {100 * r['routing_accuracy']:>7.2f}% "
              f"{r['fit_seconds']:>7.1f} {r['fit_seconds'] / plain['seconds']:>7.2f} {r['owner_mean_ratio']:>10.3f} "
              f"{r['owner_median_ratio']:>7.3f} {r['owner_p90_ratio']:>7.3f} {r['owner_max_ratio']:>7.3f}")


def dev_split(dataset: sources.Dataset, share: float, seed: int) -> sources.Dataset:
    """The training images without a seeded `share` of each class, which takes the test split's place."""
    held = baseline.validation_split(dataset.y_train, seed, share)
    return sources.Dataset(dataset.x_train[~held], dataset.y_train[~held], dataset.x_train[held],
                           dataset.y_train[held], dataset.class_names, dataset.ids[~held])


if __name__ == "__main__":
    main()
