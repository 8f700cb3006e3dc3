"""Benchmark: a stream of per-person deletion requests against retraining, in one run.

Gives every Fashion-MNIST training image an owner by a seeded, skewed law (a few people
with hundreds of images, most with a handful, each person's images in one to three
classes), fits the default SISA ensemble with those owners, then on that one run:
forgets 30 owners one request at a time (drawn uniformly among owners, so most are
small), then 30 other owners in one request, then 100 random images. In the same run it
retrains the plain CNN (`monolithic.py`: early stopping on a validation split) without
everything deleted, runs `verify`, and scans the run for any deleted image or owner id.

    python examples/benchmark_requests.py --out results/benchmark_requests.json
    python examples/benchmark_requests.py --tier-epochs 1 --out results/benchmark_requests_tier_epochs_1.json
    python examples/benchmark_requests.py --shards 10 --gate-model keras_sisa.models:strided_gate \\
        --out results/benchmark_requests_10_shards.json
    python examples/benchmark_requests.py --shards 5 --gate-model keras_sisa.models:strided_gate \\
        --out results/2026-12-02/benchmark_requests.json   # the plan that was the default until 2026-12-03

Ratios divide each forget's wall time by that one plain retrain's fit time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time

import numpy as np

import keras_sisa
from keras_sisa import data as sources

import monolithic as baseline
import plan_options
import result_file


def assign_owners(labels: np.ndarray, owners: int, seed: int, largest: int = 300,
                  exponent: float = 1.3) -> np.ndarray:
    """An owner index per image: sizes drawn from a Zipf-like law on 1..`largest`, scaled
    to the data; each owner takes its images from one to three classes, biggest first."""
    rng = np.random.default_rng(seed)
    sizes = np.arange(1, largest + 1)
    law = sizes ** -exponent
    drawn = rng.choice(sizes, owners, p=law / law.sum())
    drawn = np.maximum(1, np.round(drawn * len(labels) / drawn.sum())).astype(int)
    excess = int(drawn.sum()) - len(labels)  # rounding: one image more or less for the largest owners
    drawn[np.argsort(-drawn, kind="stable")[:abs(excess)]] -= np.sign(excess)
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)}
    owner_of = np.full(len(labels), -1)
    for owner in np.argsort(-drawn, kind="stable"):
        need = int(drawn[owner])
        open_classes = [c for c in pools if pools[c]]
        chosen = rng.choice(open_classes, min(len(open_classes), int(rng.integers(1, 4))), replace=False)
        shares = rng.multinomial(need, np.ones(len(chosen)) / len(chosen))
        for c, share in zip(chosen, shares):
            taken, pools[c] = pools[c][:share], pools[c][share:]
            owner_of[taken] = owner
            need -= len(taken)
        while need > 0:  # the chosen classes ran out: the rest from any class with images left
            c = next(c for c in pools if pools[c])
            taken, pools[c] = pools[c][:need], pools[c][need:]
            owner_of[taken] = owner
            need -= len(taken)
    return owner_of


def timed_forget(sisa, **request) -> dict:
    started = time.perf_counter()
    receipt = sisa.forget(verbose=0, **request)
    seconds = time.perf_counter() - started
    return {"images": receipt["deleted_count"], "seconds": seconds,
            "retrain_seconds": sum(receipt["seconds"]["retrain"].values()),
            "audit_seconds": receipt["seconds"].get("audit", 0.0),
            "components_rewound": len(receipt["rewound"]),
            "rewound": {name: r["to_slice"] for name, r in receipt["rewound"].items()}}


def stored_images(directory: str) -> set[str]:
    """The hash of every image in every array file of a run."""
    hashes = set()
    for root, _, files in os.walk(directory):
        for name in files:
            if name.endswith(".npz"):
                with np.load(os.path.join(root, name)) as arrays:
                    for key in arrays.files:
                        if arrays[key].ndim == 4:
                            hashes |= {hashlib.sha256(image.tobytes()).hexdigest() for image in arrays[key]}
    return hashes


def clear_ids_found(directory: str, names: list[str]) -> int:
    """How many files of the run contain any of `names` in clear."""
    found = 0
    for root, _, files in os.walk(directory):
        for name in files:
            content = open(os.path.join(root, name), "rb").read()
            found += any(n.encode() in content for n in names)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/benchmark_requests.json")
    parser.add_argument("--owners", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=30, help="Single-owner requests in the stream.")
    parser.add_argument("--batch", type=int, default=30, help="Owners forgotten in one request.")
    parser.add_argument("--samples", type=int, default=100, help="Random images forgotten in one request.")
    parser.add_argument("--limit-per-class", type=int, default=None, help="Fewer images, for a quick try.")
    parser.add_argument("--seed", type=int, default=0)
    plan_options.add_to(parser)
    args = parser.parse_args()
    options = plan_options.chosen(args)

    dataset = sources.load(limit=args.limit_per_class)
    owner_of = assign_owners(dataset.y_train, args.owners, args.seed)
    names = np.asarray([f"owner-{k:05d}" for k in range(args.owners)])
    people = names[owner_of]
    rng = np.random.default_rng(args.seed + 1)
    drawn = rng.choice(np.unique(people), args.requests + args.batch, replace=False)
    stream, batch = drawn[:args.requests], drawn[args.requests:]
    sizes = {str(n): int(c) for n, c in zip(*np.unique(people, return_counts=True))}
    result = {**result_file.stamp("requests"),
              "dataset": f"fashion_mnist ({len(dataset.y_train)} train / {len(dataset.y_test)} test)",
              "owners": {"count": len(sizes), "median_images": float(np.median(list(sizes.values()))),
                         "max_images": max(sizes.values()), "law": "Zipf-like, exponent 1.3, 1..300 images"}}
    scratch = tempfile.mkdtemp(prefix="sisa-requests-bench-")
    try:
        run = os.path.join(scratch, "run")
        sisa = keras_sisa.SISAClassifier(run, seed=args.seed, **options)
        sisa.fit(dataset.x_train, dataset.y_train, dataset.class_names, test_data=(dataset.x_test, dataset.y_test),
                 sample_ids=dataset.ids, owners=people.tolist(), verbose=0)
        evaluation, info = sisa.evaluate(), sisa.info()
        result["fit"] = {"seconds": sisa.manifest["fit_seconds"], "accuracy": evaluation["accuracy"],
                         "routing_accuracy": evaluation["routing_accuracy"],
                         "expected_owner_forget_seconds": info["expected_owner_forget_seconds"],
                         "owner_tiers": sisa.options["owner_tiers"], "options": options}
        result_file.write(args.out, result)
        print(f"fitted in {result['fit']['seconds']:.1f} s, accuracy {100 * evaluation['accuracy']:.2f}%", flush=True)
        result["stream"] = []
        for owner in stream:
            row = {"owner_images": sizes[str(owner)], **timed_forget(sisa, owners=[str(owner)])}
            result["stream"].append(row)
            print(f"owner of {row['images']} images: {row['seconds']:.1f} s, rewound {row['rewound']}", flush=True)
            result_file.write(args.out, result)
        result["batch"] = timed_forget(sisa, owners=[str(o) for o in batch])
        print(f"batch of {len(batch)} owners: {result['batch']['seconds']:.1f} s", flush=True)
        left = np.setdiff1d(dataset.ids, sisa.manifest["deleted_ids"])
        result["random"] = timed_forget(sisa, samples=rng.choice(left, args.samples, replace=False).tolist())
        print(f"{args.samples} random images: {result['random']['seconds']:.1f} s", flush=True)
        result["after"] = {"accuracy": sisa.evaluate()["accuracy"]}
        result_file.write(args.out, result)

        deleted = np.isin(dataset.ids, sisa.manifest["deleted_ids"])
        model, figures = baseline.train(dataset.x_train[~deleted], dataset.y_train[~deleted],
                                        len(dataset.class_names), args.seed)
        plain_accuracy = float(np.mean(baseline.predict(model, dataset.x_test) == dataset.y_test))
        result["monolithic_retrain"] = {**figures, "accuracy": plain_accuracy, "images": int((~deleted).sum())}
        result_file.write(args.out, result)

        rows = sisa.verify()
        gone = {hashlib.sha256(image.tobytes()).hexdigest() for image in dataset.x_train[deleted]}
        kept = {hashlib.sha256(image.tobytes()).hexdigest()
                for image in np.concatenate([dataset.x_train[~deleted], dataset.x_test])}
        forgotten_names = [str(o) for o in drawn]
        result["checks"] = {
            "verify_identical": all(r["identical"] for r in rows), "verify_components": len(rows),
            "verify_seconds": sum(r["seconds"] for r in rows),
            "deleted_images_stored": len((gone - kept) & stored_images(run)),
            "files_with_forgotten_owner_ids": clear_ids_found(run, forgotten_names)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    plain = result["monolithic_retrain"]["seconds"]
    for row in result["stream"] + [result["batch"], result["random"]]:
        row["ratio"] = row["seconds"] / plain
    ratios = [r["ratio"] for r in result["stream"]]
    result["summary"] = {
        "single_owner_mean_ratio": float(np.mean(ratios)), "single_owner_median_ratio": float(np.median(ratios)),
        "batch_ratio": result["batch"]["ratio"], "random_ratio": result["random"]["ratio"],
        "accuracy_gap_points": 100 * (result["monolithic_retrain"]["accuracy"] - result["after"]["accuracy"])}
    result_file.write(args.out, result)

    print(f"\nSISA fit {result['fit']['seconds']:.1f} s ({100 * result['fit']['accuracy']:.2f}%); plain CNN "
          f"retrained without everything deleted {plain:.1f} s ({figures['epochs']} epochs)")
    print(f"{'request':<24} {'images':>6} {'rewound':>7} {'seconds':>8} {'ratio':>6}")
    for k, r in enumerate(result["stream"], 1):
        print(f"{'owner ' + str(k):<24} {r['images']:>6} {r['components_rewound']:>7} {r['seconds']:>8.1f} "
              f"{r['ratio']:>6.3f}")
    for label, r in ((f"batch of {len(batch)} owners", result["batch"]), (f"{args.samples} random images",
                                                                       result["random"])):
        print(f"{label:<24} {r['images']:>6} {r['components_rewound']:>7} {r['seconds']:>8.1f} {r['ratio']:>6.3f}")
    s, c = result["summary"], result["checks"]
    print(f"single owner: mean {s['single_owner_mean_ratio']:.3f}x (goal <= 0.10), median "
          f"{s['single_owner_median_ratio']:.3f}x (goal <= 0.05); batch {s['batch_ratio']:.3f}x (goal <= 0.50); "
          f"random {s['random_ratio']:.3f}x (goal <= 0.60)")
    print(f"accuracy after: {100 * result['after']['accuracy']:.2f}% vs plain retrained "
          f"{100 * result['monolithic_retrain']['accuracy']:.2f}% (gap {s['accuracy_gap_points']:.2f}, goal <= 1.0); "
          f"verify identical: {c['verify_identical']} ({c['verify_components']} components); deleted images "
          f"stored: {c['deleted_images_stored']}; files with a forgotten owner id: {c['files_with_forgotten_owner_ids']}")


if __name__ == "__main__":
    main()
