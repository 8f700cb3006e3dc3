"""Benchmark: keras-sisa's default fit against the early-stopped plain CNN, across data sizes and shapes.

Each row is one dataset: Fashion-MNIST at 100, 300 and 1,000 training images per class
and in full, the same padded to 32x32 and tinted with a seeded random colour per image
(colour carries no label) at 1,000 per class, and the same shrunk to 16x16 at 300 per
class. On each, the plain default CNN (`monolithic.py`: early stopping on a validation
split of its training images) and keras-sisa with default settings (or the plan options
given) train on the same images, alternately, once per seed of `--seeds`; both are tested
on the full test split. A row reports mean accuracies over its seeds (single runs move by
up to a few points from seed to seed, on the full data too) and median fit times, taken
in this run; neither fit time includes the test.

    python examples/benchmark_accuracy.py --out results/benchmark_accuracy.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

import keras_sisa
from keras_sisa import data as sources

import monolithic as baseline
import plan_options
import result_file


def tinted(dataset, seed: int = 0):
    """Images padded to 32x32 and coloured by a seeded random tint per image: RGB input
    whose colour says nothing about the label."""
    rng = np.random.default_rng(seed)

    def colour(x):
        padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))).astype(np.float32)
        tint = rng.uniform(0.25, 1.0, (len(x), 1, 1, 3)).astype(np.float32)
        return np.round(padded * tint).astype(np.uint8)

    return dataclasses.replace(dataset, x_train=colour(dataset.x_train), x_test=colour(dataset.x_test))


def shrunk(dataset, size: int = 16):
    """Images resized to `size` x `size`."""
    resize = lambda x: tf.cast(tf.round(tf.image.resize(x, (size, size), antialias=True)), tf.uint8).numpy()
    return dataclasses.replace(dataset, x_train=resize(dataset.x_train), x_test=resize(dataset.x_test))


ROWS = {
    "fashion_mnist 100/class": (100, None),
    "fashion_mnist 300/class": (300, None),
    "fashion_mnist 1000/class": (1000, None),
    "fashion_mnist full": (None, None),
    "32x32x3 tinted 1000/class": (1000, tinted),
    "16x16 300/class": (300, shrunk),
}


def row_data(fashion, name: str):
    """The data of one row of ROWS, cut and transformed from the full Fashion-MNIST."""
    limit, variant = ROWS[name]
    dataset = fashion if limit is None else sources.limit_per_class(fashion, limit)
    if variant is not None:
        dataset = variant(dataset)
    return dataset


def plain_cnn(dataset, seed: int, fixed_epochs: int | None = None) -> dict:
    model, figures = baseline.train(dataset.x_train, dataset.y_train, len(dataset.class_names), seed, fixed_epochs)
    return {**figures, "accuracy": float(np.mean(baseline.predict(model, dataset.x_test) == dataset.y_test))}


@contextlib.contextmanager
def fitted(dataset, seed: int, options: dict) -> Iterator[tuple[keras_sisa.SISAClassifier, dict]]:
    """keras-sisa fitted on the dataset in a scratch directory, with its test accuracies and
    fit seconds; the directory is removed when the block ends."""
    directory = tempfile.mkdtemp(prefix="sisa-bench-")
    shutil.rmtree(directory)
    try:
        classifier = keras_sisa.SISAClassifier(directory, seed=seed, **options)
        started = time.perf_counter()
        classifier.fit(dataset.x_train, dataset.y_train, dataset.class_names, sample_ids=dataset.ids, verbose=0)
        seconds = time.perf_counter() - started
        report = classifier.evaluate(dataset.x_test, dataset.y_test)
        yield classifier, {"accuracy": report["accuracy"], "routing_accuracy": report["routing_accuracy"],
                           "seconds": seconds}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def sisa(dataset, seed: int, options: dict) -> dict:
    with fitted(dataset, seed, options) as (classifier, figures):
        return {**figures, "component_seconds": classifier.manifest["component_seconds"],
                "recipe": classifier.info()["recipe"]}


def over_seeds(fits: list[dict]) -> dict:
    """The fits of one model at each seed: mean accuracies, median time, and every run."""
    summary = {"accuracy": float(np.mean([f["accuracy"] for f in fits])),
               "seconds": float(np.median([f["seconds"] for f in fits])), "runs": fits}
    if "routing_accuracy" in fits[0]:
        summary["routing_accuracy"] = float(np.mean([f["routing_accuracy"] for f in fits]))
    if "epochs" in fits[0]:
        summary["epochs"] = float(np.median([f["epochs"] for f in fits]))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/benchmark_accuracy.json")
    parser.add_argument("--rows", default=",".join(ROWS), help="Comma-separated row names (default: all).")
    parser.add_argument("--seeds", default="0,1,2", help="Seeds of every row.")
    plan_options.add_to(parser)
    args = parser.parse_args()
    options = plan_options.chosen(args)

    fashion = sources.load()
    rows = []
    for name in args.rows.split(","):
        limit, dataset = ROWS[name][0], row_data(fashion, name)
        seeds = [int(s) for s in args.seeds.split(",")]
        plains, ensembles = [], []
        for seed in seeds:
            plains.append(plain_cnn(dataset, seed))
            ensembles.append(sisa(dataset, seed, options))
        plain, ensemble = over_seeds(plains), over_seeds(ensembles)
        extra = {"plain_cnn_fixed_epochs": plain_cnn(dataset, seeds[0], baseline.FIXED_EPOCHS)} if limit is None else {}
        rows.append({"data": name, "train_images": int(len(dataset.y_train)), "seeds": seeds,
                     "input_shape": list(dataset.input_shape), "plain_cnn": plain, "sisa": ensemble,
                     "accuracy_gap_points": 100 * (plain["accuracy"] - ensemble["accuracy"]),
                     "fit_time_ratio": ensemble["seconds"] / plain["seconds"], **extra})
        print(f"{name}: plain {100 * plain['accuracy']:.2f}% in {plain['seconds']:.1f} s, "
              f"sisa {100 * ensemble['accuracy']:.2f}% in {ensemble['seconds']:.1f} s", flush=True)

    result = {
        **result_file.stamp("accuracy"),
        "options": options,
        "rows": rows,
        "goals": {"accuracy_gap_points": 1.0, "fit_time_ratio": 1.5},
    }
    result_file.write(args.out, result)
    print(f"\n{'data':<28} {'plain acc':>9} {'plain s':>8} {'epochs':>6} {'sisa acc':>9} {'routing':>8} "
          f"{'sisa s':>8} {'gap':>6} {'time':>6}")
    for r in rows:
        p, s = r["plain_cnn"], r["sisa"]
        print(f"{r['data']:<28} {100 * p['accuracy']:>8.2f}% {p['seconds']:>8.1f} {p['epochs']:>6g} "
              f"{100 * s['accuracy']:>8.2f}% {100 * s['routing_accuracy']:>7.2f}% {s['seconds']:>8.1f} "
              f"{r['accuracy_gap_points']:>6.2f} {r['fit_time_ratio']:>5.2f}x")
    for r in rows:
        if "plain_cnn_fixed_epochs" in r:
            fixed = r["plain_cnn_fixed_epochs"]
            print(f"{r['data']}: the plain CNN after {fixed['epochs']} epochs (the earlier baseline): "
                  f"{100 * fixed['accuracy']:.2f}% in {fixed['seconds']:.1f} s")
    print("goals: gap <= 1.0 point, time <= 1.5x, on every row (accuracies: means over the row's seeds)")


if __name__ == "__main__":
    main()
