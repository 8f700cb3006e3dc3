"""Export of the ensemble as it stands now (after any forgets) to SavedModel and TFLite.

Everything is built in a scratch directory beside the target and renamed into place
only when the parity check passes, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import time

import keras
import numpy as np

from keras_sisa.errors import ExportError, InputError
from keras_sisa.export import parity, tflite
from keras_sisa.export.compression import Compression, compressed_ensemble
from keras_sisa.run import TEST_DATA, Run
from keras_sisa.store import MANIFEST, build_directory, dumps
from keras_sisa.tasks import load_samples

FORMATS = ("saved_model", "tflite", "both")
# Minimum top-1 agreement with the Keras ensemble, by quantization.
THRESHOLDS = {"none": 0.995, "float16": 0.995, "dynamic": 0.985, "int8": 0.985}


def export(run: Run, directory: str, format: str = "both", quantize: str = "none",
           prune: float | None = None, qat: bool = False, parity_images: int = 1000,
           calibration_images: int = 300, latency_runs: int = 200, verbose: int = 0) -> dict:
    """Writes `saved_model/` and/or `model.tflite`, `labels.txt` and `metadata.json` to `directory`.

    `prune` (target sparsity) or `qat` first fine-tune every component with tfmot on
    retained data; `qat` converts to int8. Returns the report also stored in
    `metadata.json`: per format, file size, top-1 agreement with the Keras model it was
    converted from and accuracy on held-out images of retained classes, and for TFLite
    the LiteRT latency per image.
    """
    compression = Compression(prune, qat)
    if qat and quantize == "none":
        quantize = "int8"
    if format not in FORMATS:
        raise InputError(f"Unknown export format {format!r}; expected one of {FORMATS}.")
    if quantize not in tflite.QUANTIZATIONS:
        raise InputError(f"Unknown quantization {quantize!r}; expected one of {tflite.QUANTIZATIONS}.")
    if quantize != "none" and format == "saved_model":
        raise InputError(f"quantize={quantize!r} (--quantize) applies to TFLite; use format \"tflite\" or \"both\".")
    if qat and quantize != "int8":
        raise InputError(f"qat (--qat) prepares the model for int8; drop quantize={quantize!r} or use \"int8\".")
    if _inside(directory, run.directory):
        raise InputError(f"Export to {directory} would write inside the run {run.directory}, where a "
                         "later forget could not reach it; export to a folder outside the run.")
    if keras.backend.backend() != "tensorflow":
        raise InputError(f"Export needs the TensorFlow backend, but Keras runs on "
                         f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow.")
    state = run.store.checksum(MANIFEST)  # the committed state this export is of
    return build_directory(directory, lambda scratch: _unchanged(run, state, _build(
        run, scratch, format, quantize, compression, parity_images, calibration_images, latency_runs,
        verbose, state)))


def _unchanged(run: Run, state: str, report: dict) -> dict:
    """The report, if the run is still in the state the export began from: a forget that
    started meanwhile would make the labels, model and manifest hash disagree."""
    if run.store.checksum(MANIFEST) != state:
        raise ExportError(f"{run.directory} changed while exporting (a forget or repair began); nothing "
                          "was written. Export again when it has finished.")
    return report


def _inside(path: str, root: str) -> bool:
    """Whether `path` is `root` or lies below it, after resolving links and `..`."""
    if "://" in path or "://" in root:
        return (path.rstrip("/") + "/").startswith(root.rstrip("/") + "/")
    path, root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([path, root]) == root


def _build(run: Run, out: str, format: str, quantize: str, compression: Compression, parity_images: int,
           calibration_images: int, latency_runs: int, verbose: int, state: str) -> dict:
    images, labels = _held_out(run, parity_images)
    run.require_fitted()
    model, compressed = run.ensemble(), None
    ensemble = model.predict(images.astype(np.float32), verbose=0)
    if compression.active:
        model, compressed = compressed_ensemble(run, compression, verbose)
        compressed.update(prune=compression.prune, qat=compression.qat)
    saved_model = os.path.join(out, "saved_model")
    model.export(saved_model, format="tf_saved_model", verbose=False)
    reference = model.predict(images.astype(np.float32), verbose=0)
    score = lambda predicted, size: {
        "agreement": parity.agreement(reference, predicted),
        "agreement_with_ensemble": parity.agreement(ensemble, predicted),
        "accuracy": float(np.mean(np.asarray(run.classes)[np.argmax(predicted, axis=1)] == labels)),
        "bytes": int(size)}
    threshold = THRESHOLDS[quantize]
    formats = {}
    if format in ("saved_model", "both"):
        formats["saved_model"] = score(parity.saved_model_predict(saved_model, images), _size(saved_model))
    calibration = None
    if format in ("tflite", "both"):
        calibration = _calibration(run, calibration_images) if quantize == "int8" else None
        data = tflite.convert(saved_model, quantize, None if calibration is None else calibration["images"])
        path = os.path.join(out, "model.tflite")
        with open(path, "wb") as f:
            f.write(data)
        lite = parity.LiteModel(path)
        formats["tflite"] = score(lite.predict(images), len(data))
        formats["tflite"]["latency_ms"] = lite.latency_ms(images[0], latency_runs)
        formats["tflite"]["input_dtype"] = np.dtype(lite.input["dtype"]).name
    if format == "tflite":
        shutil.rmtree(saved_model)
    for name, scores in formats.items():
        if scores["agreement"] < threshold:
            raise ExportError(f"The {name} export agrees with the Keras ensemble on only "
                              f"{100 * scores['agreement']:.2f}% of test images (needs "
                              f"{100 * threshold:.1f}% for --quantize {quantize}); nothing was written.")
    names = [run.class_names[c] for c in run.classes]
    with open(os.path.join(out, "labels.txt"), "w") as f:
        f.write("".join(f"{name}\n" for name in names))
    report = {
        "labels": names,
        "label_indices": list(run.classes),
        "forgotten": [run.class_names[c] for c in run.manifest.forgotten],
        "receipts": run.manifest.receipts,
        "manifest_sha256": state,
        "input": {"shape": [None, *run.input_shape],
                  "dtype": formats.get("tflite", {}).get("input_dtype", "float32"),
                  "range": [0, 255]},
        "preprocessing": "inside the graph: raw pixel values 0..255 in, each model rescales by 1/255",
        "output": "probabilities over `labels`, in order",
        "quantize": quantize,
        "compression": compressed,
        "parity_images": int(len(images)),
        "calibration": None if calibration is None else {
            "count": len(calibration["ids"]), "ids": calibration["ids"]},
        "formats": formats,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with open(os.path.join(out, "metadata.json"), "w") as f:
        f.write(dumps(report))
    return report


def _held_out(run: Run, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Test images of retained classes (the run's test set holds no forgotten class)."""
    if not run.store.exists(TEST_DATA):
        raise InputError(f"The run {run.directory} holds no test data to check the export against; "
                         "fit it with test_data.")
    test = run.store.read_arrays(TEST_DATA)
    keep = np.flatnonzero(np.isin(test["y"], run.classes))[:count]
    return test["x"][keep], test["y"][keep]


def _calibration(run: Run, count: int) -> dict:
    """A seeded draw of retained training images for int8 calibration, checked against deletions."""
    samples = load_samples(run.store, run.plan)
    rng = np.random.default_rng(run.config.seed)
    rows = np.sort(rng.choice(len(samples), min(count, len(samples)), replace=False))
    ids = samples.ids[rows].tolist()
    deleted = set(run.manifest.deleted_ids)
    if deleted.intersection(ids) or not np.isin(samples.y[rows], run.classes).all():
        raise ExportError("Calibration data would include a deleted sample; the run is inconsistent. "
                          "Run `keras-sisa verify` and refit.")
    return {"images": samples.x[rows], "ids": ids}


def _size(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(directory) for f in files)
