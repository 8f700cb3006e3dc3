"""Benchmark: the default Fashion-MNIST fit in one process, in 2 local workers and on local Ray.

Fits the same run three ways and checks that the weights are bit-identical; fits it once
more with one TensorFlow thread per process in 2 workers (other bits by design); projects
the wall time on S machines from the per-component times of the one-process fit:
preparing the run, then the components spread over S machines longest first.

    python examples/benchmark_scale.py --out results/benchmark_scale.json [--limit-per-class N] [--check-ema M]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import keras_sisa
from keras_sisa import data as sources

import plan_options
import result_file


def timed_fit(dataset, directory: str, seed: int, options: dict, threads: int | None = None, **execution) -> dict:
    """Prepares and fits a run; returns wall times and each component's weight digest."""
    sisa = keras_sisa.SISAClassifier(directory, seed=seed, threads=threads, **options)
    started = time.perf_counter()
    sisa.prepare(dataset.x_train, dataset.y_train, dataset.class_names, sample_ids=dataset.ids)
    prepared = time.perf_counter()
    sisa.resume(verbose=0, execution=keras_sisa.Execution(**execution))
    finished = time.perf_counter()
    return {"seconds": finished - started, "prepare_seconds": prepared - started,
            "component_seconds": sisa.manifest["component_seconds"],
            "digests": {c.name: sisa.component_state(c.name).digest() for c in sisa.plan.components}}


def projected_seconds(prepare: float, component_seconds: list[float], machines: int) -> float:
    """Wall time with each component on one of `machines` machines, longest first to the least loaded."""
    loads = [0.0] * machines
    for seconds in sorted(component_seconds, reverse=True):
        loads[loads.index(min(loads))] += seconds
    return prepare + max(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/benchmark_scale.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-per-class", type=int, default=None, help="Fewer images, for a quicker run.")
    plan_options.add_to(parser)
    args = parser.parse_args()

    dataset = sources.load(limit=args.limit_per_class)
    ways = {"1 process": {"workers": 1}, "2 local workers": {"workers": 2}, "local Ray": {"backend": "ray"},
            # A run fitted with one thread per process: other bits, but no oversubscribed cores.
            "2 workers, --threads 1": {"workers": 2, "threads": 1}}
    options = plan_options.chosen(args)
    scratch = tempfile.mkdtemp(prefix="sisa-scale-bench-")
    try:
        fits = {name: timed_fit(dataset, os.path.join(scratch, str(k)), args.seed, options, **execution)
                for k, (name, execution) in enumerate(ways.items())}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = fits["1 process"]
    same_threads = [fits[name] for name in ("2 local workers", "local Ray")]
    identical = all(fit["digests"] == base["digests"] for fit in same_threads)
    components = list(base["component_seconds"].values())
    projection = {machines: projected_seconds(base["prepare_seconds"], components, machines)
                  for machines in range(1, len(components) + 1)}
    result = {
        **result_file.stamp("scale"),
        "dataset": f"fashion_mnist ({len(dataset.y_train)} train)",
        "options": options,
        "fits": {name: {k: v for k, v in fit.items() if k != "digests"} for name, fit in fits.items()},
        "bit_identical": identical,
        "projected_seconds_on_machines": projection,
    }
    result_file.write(args.out, result)
    print(f"{'fit':<24} {'wall s':>7} {'speed-up':>8}")
    for name, fit in fits.items():
        print(f"{name:<24} {fit['seconds']:>7.1f} {base['seconds'] / fit['seconds']:>7.2f}x")
    print(f"weights bit-identical across 1 process, 2 workers and Ray: {identical}")
    print("projected wall time on S machines like this one (prepare + longest-first schedule):")
    for machines, seconds in projection.items():
        print(f"  S={machines}: {seconds:.1f} s ({base['seconds'] / seconds:.2f}x)")


if __name__ == "__main__":
    main()
