"""Benchmark: TFLite exports of the default Fashion-MNIST run, by quantization.

For each quantization: file size, gzip size, LiteRT latency per image (batch 1,
median), accuracy on held-out images and top-1 agreement with the Keras ensemble.
Writes JSON and prints a table.

    python examples/benchmark_export.py [--run RUN] --out examples/benchmark_export.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import tempfile
import time

import keras_sisa
from keras_sisa import data as sources
from keras_sisa.export import QUANTIZATIONS, THRESHOLDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="A fitted run (default: fit the default run here).")
    parser.add_argument("--out", default="examples/benchmark_export.json")
    parser.add_argument("--parity-images", type=int, default=10000)
    parser.add_argument("--latency-runs", type=int, default=500)
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="sisa-export-bench-")
    try:
        run = args.run
        if run is None:
            run = os.path.join(scratch, "run")
            d = sources.load()
            keras_sisa.SISAClassifier(run).fit(d.x_train, d.y_train, d.class_names,
                                               test_data=(d.x_test, d.y_test), sample_ids=d.ids, verbose=0)
        sisa = keras_sisa.load(run)
        rows = {}
        for quantize in QUANTIZATIONS:
            out = os.path.join(scratch, quantize)
            report = sisa.export(out, format="tflite", quantize=quantize,
                                 parity_images=args.parity_images, latency_runs=args.latency_runs)
            with open(os.path.join(out, "model.tflite"), "rb") as f:
                raw = f.read()
            scores = report["formats"]["tflite"]
            rows["float32" if quantize == "none" else quantize] = {
                **scores, "gzip_bytes": len(gzip.compress(raw, 9)), "threshold": THRESHOLDS[quantize]}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    float_bytes = rows["float32"]["bytes"]
    result = {
        "benchmark": "export",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d"),
        "parity_images": args.parity_images,
        "variants": rows,
        "int8_size_vs_float32": rows["int8"]["bytes"] / float_bytes,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"{'variant':<9} {'size KB':>8} {'gzip KB':>8} {'ms/image':>9} {'accuracy':>9} {'agreement':>10}")
    for name, r in rows.items():
        print(f"{name:<9} {r['bytes'] / 1024:>8.1f} {r['gzip_bytes'] / 1024:>8.1f} {r['latency_ms']:>9.3f} "
              f"{100 * r['accuracy']:>8.2f}% {100 * r['agreement']:>9.2f}%")
    print(f"int8 file {result['int8_size_vs_float32']:.2f}x the float32 file (goal <= 0.3)")


if __name__ == "__main__":
    main()
