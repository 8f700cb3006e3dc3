"""Benchmark: TFLite exports of the default Fashion-MNIST run, by quantization and compression.

For float32, float16, dynamic-range, int8, pruned+int8 and QAT int8: file size, gzip
size, LiteRT latency per image (batch 1, median), accuracy on held-out images and
top-1 agreement with the Keras ensemble. Writes JSON and prints a table.

    python examples/benchmark_export.py [--run RUN] --out results/benchmark_export.json
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile

import keras_sisa
from keras_sisa import data as sources
from keras_sisa.export import THRESHOLDS

import result_file

VARIANTS = {
    "float32": dict(quantize="none"),
    "float16": dict(quantize="float16"),
    "dynamic": dict(quantize="dynamic"),
    "int8": dict(quantize="int8"),
    "pruned_int8": dict(quantize="int8", prune=0.75),
    "qat_int8": dict(qat=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="A fitted run (default: fit the default run here).")
    parser.add_argument("--out", default="results/benchmark_export.json")
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
        for name, options in VARIANTS.items():
            out = os.path.join(scratch, name)
            report = sisa.export(out, format="tflite", parity_images=args.parity_images,
                                 latency_runs=args.latency_runs, **options)
            with open(os.path.join(out, "model.tflite"), "rb") as f:
                raw = f.read()
            scores = report["formats"]["tflite"]
            rows[name] = {**scores, "gzip_bytes": len(gzip.compress(raw, 9)),
                          "threshold": THRESHOLDS[report["quantize"]],
                          "sparsity": (report["compression"] or {}).get("sparsity")}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    float_bytes, int8_gzip = rows["float32"]["bytes"], rows["int8"]["gzip_bytes"]
    result = {
        **result_file.stamp("export"),
        "parity_images": args.parity_images,
        "variants": rows,
        "int8_size_vs_float32": rows["int8"]["bytes"] / float_bytes,
        "pruned_int8_gzip_vs_int8_gzip": rows["pruned_int8"]["gzip_bytes"] / int8_gzip,
        "pruned_int8_accuracy_drop_points": 100 * (rows["float32"]["accuracy"] - rows["pruned_int8"]["accuracy"]),
    }
    result_file.write(args.out, result)
    print(f"{'variant':<12} {'size KB':>8} {'gzip KB':>8} {'ms/image':>9} {'accuracy':>9} {'agreement':>10}")
    for name, r in rows.items():
        print(f"{name:<12} {r['bytes'] / 1024:>8.1f} {r['gzip_bytes'] / 1024:>8.1f} {r['latency_ms']:>9.3f} "
              f"{100 * r['accuracy']:>8.2f}% {100 * r['agreement_with_ensemble']:>9.2f}%")
    print(f"int8 file {result['int8_size_vs_float32']:.2f}x the float32 file (goal <= 0.3); pruned+int8 gzip "
          f"{result['pruned_int8_gzip_vs_int8_gzip']:.2f}x int8 gzip (goal <= 0.5), accuracy "
          f"{result['pruned_int8_accuracy_drop_points']:.2f} points under float32 (goal <= 1.0)")


if __name__ == "__main__":
    main()
