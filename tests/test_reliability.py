"""Faults and concurrency: SIGKILLed fit (at every step of preparing) and forget resume to the exact result, two writers
serialise, and a corrupted file is named."""

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from keras_sisa import InputError, load
from keras_sisa.cli.main import main
from conftest import FORGET, TESTS, TINY, read_manifest, run_cli, run_digests, start_cli, wait_until, write_npz
from test_unlearning import stored_image_hashes

def kill_when(process, ready) -> None:
    """SIGKILLs `process` as soon as `ready()` holds; fails if it ended first."""
    wait_until(process, ready)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize("point", ["first checkpoint", "training the gate"])
def test_fit_killed_mid_run_resumes_to_identical_weights(small_npz, reference, tmp_path, point):
    run = str(tmp_path / "run")
    gate = os.path.join(run, "checkpoints", "gate")
    ready = {
        "first checkpoint": lambda: os.path.exists(os.path.join(run, "checkpoints", "expert-0", "init.npz")),
        "training the gate": lambda: os.path.exists(os.path.join(gate, "init.npz")),
    }[point]
    kill_when(start_cli("fit", "--npz", small_npz, *TINY, "--out", run), ready)
    assert read_manifest(run).get("status") in ("preparing", "fitting")
    with pytest.raises(InputError, match="interrupted"):
        load(run).predict(np.zeros((1, 28, 28, 1)))
    again = run_cli("fit", "--npz", small_npz, *TINY, "--out", run)
    assert again.returncode == 0, again.stderr
    assert run_digests(run) == reference[0]
    seconds = load(run).manifest["component_seconds"]  # the killed attempt's finished components too
    assert set(seconds) == set(run_digests(run)) and all(s > 0 for s in seconds.values())


@pytest.mark.parametrize("point", ["before purge", "after purge", "during retraining"])
def test_forget_killed_anywhere_is_finished_exactly_and_never_undone(small, reference, tmp_path, point):
    run = str(tmp_path / "run")
    shutil.copytree(reference[2], run)
    gate = os.path.join(run, "checkpoints", "gate")
    purged = lambda: read_manifest(run).get("pending_forget", {}).get("purged")
    after_purge = []

    def retraining():
        """True once the gate has a checkpoint more than it kept after the purge."""
        if not purged():
            return False
        after_purge.append(len(os.listdir(gate)))
        return len(os.listdir(gate)) > after_purge[0]

    ready = {
        "before purge": lambda: read_manifest(run).get("status") == "forgetting",
        "after purge": purged,
        "during retraining": retraining,
    }[point]
    kill_when(start_cli("forget", run, "--class", FORGET), ready)
    assert load(run).info()["status"] == "forgetting"
    unproven = CliRunner().invoke(main, ["verify", run])
    assert unproven.exit_code == 2 and f"Run `keras-sisa forget {run}` to finish it first" in unproven.stderr
    shown = run_cli("info", run)
    assert shown.returncode == 0 and f"PENDING forget 1 of 60 images of {FORGET}" in shown.stdout
    deleted = stored_image_hashes_of(small.x_train[small.y_train == small.class_names.index(FORGET)])
    if point != "before purge":
        assert not stored_image_hashes(load(run)) & deleted
    finished = run_cli("forget", run)
    assert finished.returncode == 0, finished.stderr
    assert run_digests(run) == reference[1]
    assert not stored_image_hashes(load(run)) & deleted
    assert load(run).info()["forgotten"] == [FORGET]
    receipt = load(run).receipts()[-1]
    assert all(s > 0 for s in receipt["seconds"]["retrain"].values())
    if point != "before purge":  # the images were gone before an audit could see them: it says so
        assert "resumed" in receipt and receipt["audit_unavailable"] and "audit" not in receipt


def stored_image_hashes_of(images):
    import hashlib

    return {hashlib.sha256(image.tobytes()).hexdigest() for image in images}


def test_two_forgets_at_once_are_both_applied_once(reference, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(reference[2], run)
    first, second = start_cli("forget", run, "--class", "Sandal"), start_cli("forget", run, "--class", "Trouser")
    for process in (first, second):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    info = load(run).info()
    assert sorted(info["forgotten"]) == ["Sandal", "Trouser"]
    assert [r["id"] for r in info["receipts"]] == [1, 2]
    verified = run_cli("verify", run)
    assert verified.returncode == 0 and "MISMATCH" not in verified.stdout


def test_a_corrupted_checkpoint_is_named_on_load(reference, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(reference[2], run)
    path = os.path.join(run, "checkpoints", "gate", sorted(os.listdir(os.path.join(run, "checkpoints", "gate")))[0])
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\x00" * 16)
    result = run_cli("evaluate", run)
    assert result.returncode == 2
    assert f"checkpoints/gate/{os.path.basename(path)}" in result.stderr and "repair" in result.stderr


def test_repair_refits_the_component_from_its_last_good_slice(reference, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(reference[2], run)
    folder = os.path.join(run, "checkpoints", "gate")
    victim = sorted(os.listdir(folder))[-2]
    os.remove(os.path.join(folder, victim))
    repaired = run_cli("repair", run)
    assert repaired.returncode == 0, repaired.stderr
    assert f"checkpoints/gate/{victim} is missing" in repaired.stdout
    assert run_digests(run) == reference[0]


@pytest.mark.parametrize("changes, message", [
    (dict(y_test=None), "lacks arrays"),
    (dict(x_train=np.array(["a"] * 240)), "hold numbers"),
    (dict(x_train=np.array([np.zeros((28, 28)), np.zeros((14, 14))], dtype=object)), "not a plain npz"),
    (dict(y_train=np.full(240, 7)), "out of range"),
    (dict(x_test=np.full((120, 28, 28, 1), np.inf)), "NaN or infinite"),
    (dict(y_train=np.linspace(0, 3, 240)), "integer labels"),
])
def test_hostile_npz_is_refused_with_exit_2_and_nothing_written(small, tmp_path, changes, message):
    out = tmp_path / "run"
    hostile = write_npz(tmp_path / "hostile.npz", small, **changes)
    result = CliRunner().invoke(main, ["fit", "--npz", hostile, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize("option", ["--epochs", "--gate-epochs", "--tier-epochs"])
@pytest.mark.parametrize("value", ["2,0", "2,", "two"])
def test_bad_epoch_schedules_are_refused(small, tmp_path, option, value):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["fit", "--npz", write_npz(tmp_path / "data.npz", small), option, value,
                                       "--out", str(out)])
    assert result.exit_code == 2 and option in result.output and "comma-separated" in result.output
    assert not out.exists()


@pytest.mark.parametrize("option", ["--epochs", "--gate-epochs", "--tier-epochs", "--batch-size", "--gate-batch-size",
                                    "--limit-per-class", "--classes-per-slice", "--slices", "--shards"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_zero_or_negative_counts_are_refused(small, tmp_path, option, value):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["fit", "--npz", write_npz(tmp_path / "hostile.npz", small), option, value,
                                       "--out", str(out)])
    assert result.exit_code == 2 and option in result.output
    assert not out.exists()


def test_a_tier_epoch_schedule_is_refused(small, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["fit", "--npz", write_npz(tmp_path / "data.npz", small), "--tier-epochs",
                                       "2,1", "--out", str(out)])
    assert result.exit_code == 2 and "--tier-epochs" in result.output and "positive whole number" in result.output
    assert not out.exists()


def test_class_names_with_separators_and_unicode_work_end_to_end(small, tmp_path):
    names = np.array(["shirts/tops", "Hosen ü", "sandales à lanières", "..\\sneaker"])
    path = write_npz(tmp_path / "hostile.npz", small, class_names=names)
    run = str(tmp_path / "run")
    fitted = run_cli("fit", "--npz", path, *TINY, "--out", run)
    assert fitted.returncode == 0, fitted.stderr
    forgot = run_cli("forget", run, "--class", "shirts/tops")
    assert forgot.returncode == 0, forgot.stderr
    assert load(run).info()["forgotten"] == ["shirts/tops"]
    assert sorted(os.listdir(run)) == [".lock", "checkpoints", "data", "manifest.json", "plan.json", "receipts"]


def test_a_write_left_unfinished_by_a_killed_command_is_removed_by_the_next(reference, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(reference[2], run)
    stray = os.path.join(run, "data", "test.npz.tmp-deadbeef")  # as a SIGKILL mid-write leaves it
    with open(stray, "wb") as f:
        f.write(b"PK\x03\x04 half an npz")
    finished = run_cli("forget", run, "--class", FORGET)
    assert finished.returncode == 0, finished.stderr
    assert not os.path.exists(stray)
    assert run_digests(run) == reference[1]


def fit_steps(small_npz, run, kill_at: int) -> subprocess.CompletedProcess:
    """The tiny CLI fit into `run`, SIGKILLed at its `kill_at`th file-system step (-1: none)."""
    return subprocess.run([sys.executable, os.path.join(TESTS, "kill_at_step.py"), str(kill_at), run,
                           "fit", "--npz", small_npz, *TINY, "--out", run],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=TESTS))


@pytest.mark.slow
def test_a_fit_killed_at_every_step_of_preparing_finishes_to_identical_weights(small_npz, reference, tmp_path):
    listed = fit_steps(small_npz, str(tmp_path / "listed"), -1)
    assert listed.returncode == 0, listed.stderr
    steps = [line for line in listed.stderr.splitlines() if line.startswith("step ")]
    preparing = steps[:next(n for n, step in enumerate(steps) if "checkpoints" in step)]
    assert len(preparing) >= 10, steps  # lock, manifest, every data file, plan, manifest again
    for n, step in enumerate(preparing):
        run = str(tmp_path / f"killed-{n}")
        assert fit_steps(small_npz, run, n).returncode == -signal.SIGKILL, step
        shown = CliRunner().invoke(main, ["info", run])
        assert shown.exit_code == 0 or (shown.exit_code == 2 and shown.stderr.count("\n") == 1), (step, shown.output)
        again = run_cli("fit", "--npz", small_npz, *TINY, "--out", run)
        assert again.returncode == 0, (step, again.stderr)
        assert run_digests(run) == reference[0], step
        assert not [f for _, _, files in os.walk(run) for f in files if ".tmp-" in f], step
