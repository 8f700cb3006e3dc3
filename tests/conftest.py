"""Shared fixtures: small real Fashion-MNIST subsets and one fitted run."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from keras_sisa import SISAClassifier, data, load  # noqa: E402
from tiny_models import tiny_cnn  # noqa: E402

CLASSES = [0, 1, 5, 7]  # T-shirt/top, Trouser, Sandal, Sneaker
TESTS = os.path.dirname(__file__)
# CLI options for a fast fit with the tiny models.
TINY = ["--shards", "2", "--model", "tiny_models:tiny_cnn", "--gate-model", "tiny_models:tiny_cnn", "--epochs", "1",
        "--gate-epochs", "1", "--batch-size", "32", "--gate-batch-size", "32"]
# The first class in the gate's order: forgetting it retrains the most.
FORGET = "T-shirt/top"


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST, loaded once."""
    return data.load_fashion_mnist()


@pytest.fixture(scope="session")
def small(fashion):
    """60 training and 30 test images of each of four real Fashion-MNIST classes, relabelled 0..3."""
    return subset(fashion, CLASSES, train=60, test=30)


def subset(dataset, classes, train, test):
    def pick(y, n):
        return np.concatenate([np.flatnonzero(y == c)[:n] for c in classes])
    rows, test_rows = pick(dataset.y_train, train), pick(dataset.y_test, test)
    relabel = {c: k for k, c in enumerate(classes)}
    return data.Dataset(dataset.x_train[rows], np.array([relabel[c] for c in dataset.y_train[rows]]),
                        dataset.x_test[test_rows], np.array([relabel[c] for c in dataset.y_test[test_rows]]),
                        [dataset.class_names[c] for c in classes], ids=dataset.ids[rows])


def fit_small(directory, dataset, plan=None, owners=None, test_owners=None, **options):
    """A SISA fit with tiny models: 2 shards, two epochs per slice."""
    settings = dict(model_fn=tiny_cnn, gate_fn=tiny_cnn, shards=2, epochs=2, gate_epochs=2,
                    batch_size=32, gate_batch_size=32, learning_rate=2e-3, gate_learning_rate=4e-3)
    settings.update(options)
    sisa = SISAClassifier(str(directory), **settings)
    return sisa.fit(dataset.x_train, dataset.y_train, dataset.class_names,
                    test_data=(dataset.x_test, dataset.y_test), sample_ids=dataset.ids, plan=plan,
                    verbose=0, owners=owners, test_owners=test_owners)


@pytest.fixture(scope="session")
def fitted(small, tmp_path_factory):
    """One fitted run shared by the tests that only read it."""
    return fit_small(tmp_path_factory.mktemp("runs") / "fitted", small)


def write_npz(path, dataset, **changes):
    """Saves `dataset` as the npz that `--npz` reads; `changes` replace arrays (None drops one)."""
    arrays = dict(x_train=dataset.x_train, y_train=dataset.y_train, x_test=dataset.x_test,
                  y_test=dataset.y_test, class_names=np.array(dataset.class_names))
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


@pytest.fixture(scope="session")
def small_npz(small, tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "small.npz", small)


def start_cli(*args, **env) -> subprocess.Popen:
    """Starts the installed `keras-sisa` entry point in a fresh process that can import tiny_models;
    `env` adds environment variables."""
    return subprocess.Popen(["keras-sisa", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=TESTS, **env))


def wait_until(process, ready, timeout=120) -> None:
    """Waits until `ready()` holds; fails if `process` ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "the command finished before the fault could be injected"
        assert time.monotonic() < deadline
        time.sleep(0.02)


def run_cli(*args, **env) -> subprocess.CompletedProcess:
    """Runs `keras-sisa` to the end; returns its exit code and output."""
    process = start_cli(*args, **env)
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def read_manifest(run) -> dict:
    """The manifest of the run at `run` as a plain JSON dict, or {} while it is missing or
    being replaced."""
    try:
        with open(os.path.join(run, "manifest.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def run_digests(run) -> dict[str, str]:
    """Each component's weight digest in the run at `run`."""
    sisa = load(run)
    return {c.name: sisa.component_state(c.name).digest() for c in sisa.plan.components}


@pytest.fixture(scope="session")
def reference(small_npz, tmp_path_factory):
    """Uninterrupted sequential CLI runs: a fit, and the same fit after forgetting FORGET."""
    root = tmp_path_factory.mktemp("reference")
    fitted = str(root / "fitted")
    assert run_cli("fit", "--npz", small_npz, *TINY, "--out", fitted).returncode == 0
    forgotten = str(root / "forgotten")
    shutil.copytree(fitted, forgotten)
    assert run_cli("forget", forgotten, "--class", FORGET).returncode == 0
    return run_digests(fitted), run_digests(forgotten), fitted
