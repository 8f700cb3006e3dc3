"""The command line, end to end on real Fashion-MNIST, and its handling of bad input."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import TESTS, TINY, run_cli
from keras_sisa.cli.main import main


@pytest.mark.slow
def test_fit_info_evaluate_on_fashion_mnist_end_to_end(tmp_path):
    run = str(tmp_path / "run")
    fitted = run_cli("fit", "--limit-per-class", "30", *TINY, "--shards", "3", "--out", run)
    assert fitted.returncode == 0, fitted.stderr
    assert "Fitted 4 components on 300 images of 10 classes" in fitted.stdout

    info = json.loads(run_cli("info", run, "--json").stdout)
    assert len(info["classes"]) == 10 and [c["name"] for c in info["components"]][-1] == "gate"
    assert all(c["checkpoints"] == len(c["slices"]) for c in info["components"])

    report = json.loads(run_cli("evaluate", run, "--json").stdout)
    assert report["count"] == 10000 and 0.1 < report["accuracy"] <= 1.0


def test_info_prints_a_readable_summary(fitted):
    result = CliRunner().invoke(main, ["info", fitted.directory])
    assert result.exit_code == 0
    assert "gate" in result.output and "checkpoints" in result.output


@pytest.mark.parametrize("args, message", [
    (["--dataset", "nope"], "Unknown dataset 'nope'"),
    (["--shards", "0"], "--shards to be 1 or more"),
    (["--shards", "99"], "more than the 4 classes"),
    (["--class-order", "Sneakers"], "Did you mean 'Sneaker'"),
    (["--model", "no_such_module:f"], "Cannot import model builder"),
    (["--replay-ratio", "-1"], "replay_ratio"),
    (["--gate-learning-rate", "0"], "gate_learning_rate above zero"),
    (["--gate-ema", "1"], "gate_ema (--gate-ema) from 0 (off) to below 1"),
    (["--tier-replay-ratio", "-1"], "tier_replay_ratio (--tier-replay-ratio) to be zero or more"),
    (["--tier-ema", "1"], "tier_ema (--tier-ema) from 0 (off) to below 1"),
    (["--check-ema", "-0.1"], "check_ema (--check-ema) from 0 (off) to below 1"),
    (["--npz", "missing.npz"], "No such npz file"),
])
def test_bad_fit_options_print_one_line_exit_2_and_write_nothing(small_npz, tmp_path, args, message):
    out = tmp_path / "run"
    options = ["--npz", small_npz] if "--npz" not in args and "--dataset" not in args else []
    result = CliRunner().invoke(main, ["fit", *options, *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1
    assert not out.exists()


def test_fit_into_an_occupied_directory_exits_2_and_leaves_it_alone(small_npz, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = CliRunner().invoke(main, ["fit", "--npz", small_npz, *TINY, "--out", str(tmp_path)])
    assert result.exit_code == 2 and "not empty" in result.output
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_commands_on_a_directory_that_is_not_a_run_exit_2(tmp_path):
    for command in ("info", "evaluate"):
        result = CliRunner().invoke(main, [command, str(tmp_path)])
        assert result.exit_code == 2 and "is not a keras-sisa run" in result.output


def test_wheel_installs_cli_and_export_inside_the_package(tmp_path):
    import zipfile

    root = os.path.dirname(TESTS)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path), root], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("keras_sisa-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"keras_sisa"}
    assert "keras_sisa/cli/main.py" in names and "keras_sisa/export/__init__.py" in names


def test_version_answers_without_tensorflow_and_commands_print_no_native_logs(tmp_path):
    version = subprocess.run(["keras-sisa", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("keras-sisa, version")
    probe = "import sys, keras_sisa.cli.entry; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    refused = subprocess.run(["keras-sisa", "info", str(tmp_path)], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"Error: {tmp_path} is not a keras-sisa run (no manifest.json); give the --out directory of a "
        "`keras-sisa fit`."]


def test_a_checkout_imports_cli_and_export_as_installed():
    """Run from the checkout root, its keras_sisa/ shadows an installed copy: cli/ and
    export/ must still import as keras_sisa.cli and keras_sisa.export."""
    root = os.path.dirname(TESTS)
    probe = ("import sys; sys.path.insert(0, '.'); import importlib.util as u; "
             "print(u.find_spec('keras_sisa.cli').origin); print(u.find_spec('keras_sisa.export').origin)")
    found = subprocess.run([sys.executable, "-S", "-c", probe], cwd=root, capture_output=True, text=True)
    assert found.stdout.split() == [os.path.join(root, "cli", "__init__.py"),
                                    os.path.join(root, "export", "__init__.py")], found.stderr


def test_quiet_tensorboard_fit_prints_one_line_logs_every_slice_and_keeps_the_weights(small_npz, reference, tmp_path):
    from conftest import run_digests

    run, logs = tmp_path / "run", tmp_path / "logs"
    result = CliRunner().invoke(main, ["fit", "--npz", small_npz, *TINY, "--quiet", "--tensorboard", str(logs),
                                       "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Fitted "), result.output
    for component in ("expert-0", "expert-1", "gate"):
        slices = [s for s in os.listdir(logs / component)]
        assert slices and all(any(f.startswith("events.out.tfevents")
                                  for f in os.listdir(logs / component / s / "train")) for s in slices)
    assert run_digests(str(run)) == reference[0]  # TensorBoard observes; it changes no weight
    forgot = CliRunner().invoke(main, ["forget", str(run), "--class", "Sneaker", "--quiet"])
    assert forgot.exit_code == 0 and forgot.output.count("\n") == 1 and forgot.output.startswith("Forgot ")
