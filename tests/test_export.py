"""Export: one SavedModel and one TFLite file of the current ensemble, checked in LiteRT."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from keras_sisa import InputError, load
from keras_sisa.cli.main import main
from keras_sisa.export.parity import LiteModel, saved_model_predict

ROOT = os.path.dirname(os.path.dirname(__file__))


@pytest.fixture(scope="module")
def forgotten(fitted, tmp_path_factory):
    """A copy of the fitted run with Sandal forgotten."""
    target = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(fitted.directory, target)
    sisa = load(str(target))
    sisa.forget(classes=["Sandal"], verbose=0)
    return sisa


@pytest.fixture(scope="module")
def exported(forgotten, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export") / "float32")
    return out, forgotten.export(out, latency_runs=20)


def test_export_after_forget_has_no_output_for_the_forgotten_class(forgotten, exported, small):
    out, report = exported
    labels = open(os.path.join(out, "labels.txt")).read().splitlines()
    assert labels == ["T-shirt/top", "Trouser", "Sneaker"]
    assert LiteModel(os.path.join(out, "model.tflite")).output_size == 3
    assert saved_model_predict(os.path.join(out, "saved_model"), small.x_test[:4]).shape == (4, 3)
    metadata = json.load(open(os.path.join(out, "metadata.json")))
    assert metadata["forgotten"] == ["Sandal"] and metadata["receipts"] == [1]
    assert metadata["input"]["shape"] == [None, 28, 28, 1]


def test_tflite_and_saved_model_agree_with_keras(forgotten, exported, small):
    out, report = exported
    assert report["formats"]["tflite"]["agreement"] >= 0.995
    assert report["formats"]["saved_model"]["agreement"] >= 0.995
    keep = np.isin(small.y_test, forgotten.classes)
    keras_probabilities = forgotten.predict(small.x_test[keep])
    lite = LiteModel(os.path.join(out, "model.tflite")).predict(small.x_test[keep].astype(np.float32))
    np.testing.assert_allclose(lite, keras_probabilities, atol=1e-4)


def test_int8_export_takes_uint8_and_calibrates_on_retained_samples_only(forgotten, small, tmp_path):
    report = forgotten.export(str(tmp_path / "int8"), format="tflite", quantize="int8", latency_runs=5)
    assert report["formats"]["tflite"]["input_dtype"] == "uint8"
    assert report["formats"]["tflite"]["agreement"] >= 0.985
    used = set(report["calibration"]["ids"])
    sandal = small.class_names.index("Sandal")
    assert used and not used & set(small.ids[small.y_train == sandal].tolist())
    assert not os.path.exists(tmp_path / "int8" / "saved_model")


@pytest.mark.parametrize("args, code, message", [
    (["--format", "saved_model", "--quantize", "int8"], 2, "applies to TFLite"),
    (["--quantize", "int4"], 2, "Invalid value for '--quantize'"),
])
def test_bad_export_options_exit_2_and_write_nothing(forgotten, tmp_path, args, code, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", forgotten.directory, "--out", str(out), *args])
    assert result.exit_code == code and message in result.output
    assert not out.exists()


def test_export_refuses_an_occupied_directory(forgotten, tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        forgotten.export(str(tmp_path))
    assert os.listdir(tmp_path) == ["mine.txt"]


def test_edge_example_classifies_png_files_without_tensorflow(exported, small, tmp_path):
    out, _ = exported
    trouser = small.x_test[small.y_test == small.class_names.index("Trouser")][0]
    png = tmp_path / "trouser.png"
    tf.io.write_file(str(png), tf.io.encode_png(trouser))
    script = os.path.join(ROOT, "examples", "edge_inference.py")
    check = ("import runpy, sys; sys.argv = ['edge', sys.argv[1], sys.argv[2]]; "
             "runpy.run_path(%r, run_name='__main__'); "
             "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'" % script)
    result = subprocess.run([sys.executable, "-c", check, out, str(png)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{png}: ")
    assert result.stdout.split(": ")[1].split(" (")[0] in ("T-shirt/top", "Trouser", "Sneaker")


def test_edge_png_decoder_reads_what_tensorflow_wrote(small, tmp_path):
    import runpy

    read_png = runpy.run_path(os.path.join(ROOT, "examples", "edge_inference.py"))["read_png"]
    gradient = np.arange(32 * 20 * 3, dtype=np.uint8).reshape(32, 20, 3)  # exercises every filter
    for name, image in (("grey", small.x_test[0]), ("rgb", gradient)):
        path = str(tmp_path / f"{name}.png")
        tf.io.write_file(path, tf.io.encode_png(image))
        np.testing.assert_array_equal(read_png(path), image)


def test_pruned_export_is_sparse_at_the_requested_level(forgotten, tmp_path):
    report = forgotten.export(str(tmp_path / "pruned"), format="tflite", quantize="int8", prune=0.6,
                              latency_runs=5)
    assert report["compression"]["sparsity"] >= 0.59
    assert report["formats"]["tflite"]["agreement"] >= 0.985
    assert LiteModel(str(tmp_path / "pruned" / "model.tflite")).output_size == 3


def test_qat_export_converts_to_int8(forgotten, tmp_path):
    report = forgotten.export(str(tmp_path / "qat"), format="tflite", qat=True, latency_runs=5)
    assert report["quantize"] == "int8" and report["compression"]["qat"]
    assert report["formats"]["tflite"]["input_dtype"] == "uint8"


def test_bridge_names_a_layer_it_cannot_convert():
    import keras

    from keras_sisa.export.bridge import to_tf_keras

    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LayerNormalization(name="norm")(inputs)))
    with pytest.raises(InputError, match="Layer 'norm' of type LayerNormalization cannot be bridged"):
        to_tf_keras(model)


def test_prune_and_qat_together_are_refused(forgotten, tmp_path):
    result = CliRunner().invoke(main, ["export", forgotten.directory, "--out", str(tmp_path / "x"),
                                       "--prune", "0.5", "--qat"])
    assert result.exit_code == 2 and "not both" in result.output
