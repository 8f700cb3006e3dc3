"""Hostile and careless input: each case ends in one `Error:` line, exit code 2, and no
half-written run."""

import io
import json
import os
import re
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from keras_sisa import data
from keras_sisa.cli.main import main
from conftest import FORGET, TINY, read_manifest, start_cli, wait_until, write_npz


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(result, *fragments) -> None:
    """Exit 2 with a single `Error:` line on stderr naming every fragment, and no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def with_model(option, builder):
    """TINY with `option` (--model or --gate-model) set to tiny_models:`builder`."""
    options = list(TINY)
    options[options.index(option) + 1] = f"tiny_models:{builder}"
    return options


@pytest.mark.parametrize("option", ["--model", "--gate-model"])
@pytest.mark.parametrize("builder, message", [
    ("returns_none", "returned NoneType, not a keras.Model"),
    ("returns_text", "returned str, not a keras.Model"),
    ("fixed_outputs", "returned 10 outputs when asked for 2"),
    ("ignores_input_shape", "for input shape (32, 32, 3), not the data's (28, 28, 1)"),
    ("two_inputs", "2 inputs and 1 outputs"),
    ("unbuilt_sequential", "not built"),
])
def test_bad_model_builders_are_refused_before_anything_is_written(small_npz, tmp_path, option, builder, message):
    out = tmp_path / "run"
    refused(invoke("fit", "--npz", small_npz, *with_model(option, builder), "--out", out), builder, message)
    assert not out.exists()


@pytest.mark.parametrize("change, message", [
    (lambda s: dict(y_train=np.where(np.arange(len(s.y_train)) == 3, np.nan, s.y_train.astype(float)),
                    class_names=None), "NaN, infinite or fractional"),
    (lambda s: dict(y_train=np.where(np.arange(len(s.y_train)) == 0, 2 ** 31, s.y_train), class_names=None),
     "no class names; number the classes 0..K-1"),
    (lambda s: dict(x_train=s.x_train.astype(np.complex64) * (1 + 1j)), "complex numbers"),
    (lambda s: dict(x_train=np.zeros((len(s.y_train), 0, 0), np.uint8),
                    x_test=np.zeros((len(s.y_test), 0, 0), np.uint8)), "0x0 pixels"),
])
def test_insane_labels_and_pixels_are_refused(small, tmp_path, change, message):
    out = tmp_path / "run"
    path = write_npz(tmp_path / "bad.npz", small, **change(small))
    refused(invoke("fit", "--npz", path, *TINY, "--out", out), message)
    assert not out.exists()


def test_more_shards_than_classes_is_refused_but_the_default_follows_the_data(small, tmp_path):
    three = np.isin(small.y_train, [0, 1, 2])
    path = write_npz(tmp_path / "three.npz", small, x_train=small.x_train[three], y_train=small.y_train[three])
    options = [o for o in TINY if o not in ("--shards", "2")]
    refused(invoke("fit", "--npz", path, *options, "--shards", 5, "--out", tmp_path / "five"), "shards=5 (--shards)")
    assert not (tmp_path / "five").exists()
    planned = invoke("fit", "--npz", path, *options, "--only", "plan", "--out", tmp_path / "run")
    assert planned.exit_code == 0, planned.output
    assert "Planned 4 components" in planned.output  # an expert per class and the gate


def test_an_interrupted_fit_is_not_resumed_with_other_options(small_npz, tmp_path):
    out = tmp_path / "run"
    assert invoke("fit", "--npz", small_npz, *TINY, "--only", "plan", "--out", out).exit_code == 0
    other = with_model("--model", "softmax_mlp")
    other[other.index("--epochs") + 1] = "2"
    refused(invoke("fit", "--out", out, *other, "--seed", 7), "--model tiny_models:softmax_mlp",
            "--epochs 2 (the run has 1)", "--seed 7 (the run has 0)", "without them")
    refused(invoke("forget", out, "--class", "Trouser"), "is fitting", f"keras-sisa fit --out {out}")
    refused(invoke("verify", out), "is fitting", "to finish it first")


def test_export_into_the_run_is_refused(fitted):
    inside = os.path.join(fitted.directory, "exported")
    refused(invoke("export", fitted.directory, "--out", inside), "inside the run")
    assert not os.path.exists(inside)


@pytest.mark.slow
def test_readers_wait_for_a_running_forget_and_answer_after_it(fitted, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(fitted.directory, run)
    forgetting = start_cli("forget", run, "--class", FORGET, "--no-audit")
    wait_until(forgetting, lambda: read_manifest(run).get("status") == "forgetting")
    reader = invoke("evaluate", run, "--json")
    assert forgetting.wait() == 0
    assert reader.exit_code == 0 and "Waiting for" in reader.stderr, reader.output
    assert FORGET not in json.loads(reader.stdout)["per_class"]


@pytest.fixture
def mounted(tmp_path):
    """Mounts small tmpfs filesystems under tmp_path (root only); unmounts them after the test."""
    points = []

    def mount(name, options):
        point = tmp_path / name
        point.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                          capture_output=True).returncode:
            pytest.skip("mounting a tmpfs needs root")
        points.append(point)
        return point

    yield mount
    for point in points:
        subprocess.run(["umount", str(point)], check=True)


def test_a_read_only_out_is_refused_in_one_line(small_npz, mounted):
    read_only = mounted("ro", "ro,size=1m")
    refused(invoke("fit", "--npz", small_npz, *TINY, "--out", read_only / "run"), "Read-only file system")
    assert not os.listdir(read_only)


def test_a_full_disk_stops_a_fit_in_one_line_and_the_same_fit_finishes_after(small_npz, mounted):
    disk = mounted("disk", "size=256k")
    out = disk / "run"
    full = invoke("fit", "--npz", small_npz, *TINY, "--out", out)
    lines = full.stderr.strip().splitlines()
    assert full.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: The disk is full"), full.output
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
    finished = invoke("fit", "--npz", small_npz, *TINY, "--out", out)
    assert finished.exit_code == 0, finished.output
    assert invoke("evaluate", out).exit_code == 0


def test_class_names_with_mathtext_characters_make_a_report(small, tmp_path):
    names = np.array(["$5 tee", "trousers_$x^2$", "sandal\\$", "sneaker"])
    path = write_npz(tmp_path / "dollars.npz", small, class_names=names)
    run, out = tmp_path / "run", tmp_path / "report"
    assert invoke("fit", "--npz", path, *TINY, "--out", run).exit_code == 0
    made = invoke("report", run, "--out", out)
    assert made.exit_code == 0, made.output
    assert "trousers_$x^2$" in (out / "report.json").read_text()


@pytest.mark.slow
def test_a_mixed_photo_folder_fits_forgets_verifies_and_exports_with_default_flags(small, tmp_path):
    import tensorflow as tf

    root, names = tmp_path / "photos", [name.replace("/", " or ") for name in small.class_names]
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for k, image in enumerate(small.x_train[small.y_train == c][:40]):
            if k % 5 == 1:
                image = tf.image.resize(image, (36, 36)).numpy().round().astype(np.uint8)
            if k % 4 == 2:
                image = np.repeat(image, 3, axis=-1)
            if k % 7 == 3:
                image = np.concatenate([np.repeat(image[..., :1], 3, axis=-1), np.full_like(image[..., :1], 255)], -1)
            tf.io.write_file(str(root / name / f"{k}.png"), tf.io.encode_png(image))
    (root / names[0] / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    os.mkfifo(root / names[1] / "pipe.png")
    run, exported = tmp_path / "run", tmp_path / "exported"
    fitted = invoke("fit", "--data-dir", root, "--out", run)
    assert fitted.exit_code == 0, fitted.output
    assert "as 28x28 grayscale; resized 32 from other sizes; converted 56 from another colour mode" in fitted.output
    assert "skipped 2 entries" in fitted.output
    assert invoke("forget", run, "--class", names[2]).exit_code == 0
    verified = invoke("verify", run, "--json")
    assert verified.exit_code == 0 and all(row["identical"] for row in json.loads(verified.stdout))
    made = invoke("export", run, "--out", exported, "--format", "tflite")
    assert made.exit_code == 0, made.output
    assert sorted((exported / "labels.txt").read_text().splitlines()) == sorted(set(names) - {names[2]})


@pytest.mark.parametrize("out", ["/", "//", "", "gs://"])
def test_the_filesystem_root_is_not_a_run(out):
    from keras_sisa import InputError
    from keras_sisa.store import Store

    with pytest.raises(InputError, match="not a directory for a run"):  # checked on the path, never by writing
        Store(out)


def test_a_symlinked_lock_is_refused_and_its_target_untouched(fitted, tmp_path):
    run, target = tmp_path / "run", tmp_path / "precious.txt"
    shutil.copytree(fitted.directory, run)
    target.write_text("keep me")
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(target)
    refused(invoke("forget", run, "--class", FORGET), ".lock is a symbolic link")
    assert target.read_text() == "keep me"


def test_a_fit_killed_after_taking_its_lock_can_be_run_again(small_npz, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("")
    planned = invoke("fit", "--npz", small_npz, *TINY, "--only", "plan", "--out", out)
    assert planned.exit_code == 0, planned.output


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "manifest.json").write_bytes(b"\xff" + (run / "manifest.json").read_bytes()[1:]),
     "manifest.json is corrupted"),
    (lambda run: (run / "plan.json").unlink(), "plan.json is missing"),
])
@pytest.mark.parametrize("command", ["info", "evaluate", "verify", "repair"])
def test_a_broken_manifest_or_plan_is_named(fitted, tmp_path, damage, message, command):
    run = tmp_path / "run"
    shutil.copytree(fitted.directory, run)
    damage(run)
    refused(invoke(command, run), message)


@pytest.mark.parametrize("content, message", [
    ("1\n²\n", "got '²'"), ("--1\n", "got '--1'"), ("١\n", "got '١'"), ("", "holds no sample id"),
    ("7" * 100 + "x\n", "..."), (b"\x00\xff\x01\n", "line 1"),
])
def test_bad_samples_files_are_refused(fitted, tmp_path, content, message):
    path = tmp_path / "ids.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = invoke("forget", fitted.directory, "--samples", path)
    refused(result, message)
    assert len(result.stderr) < 300


def test_class_names_with_line_breaks_are_refused(small, tmp_path):
    path = write_npz(tmp_path / "names.npz", small, class_names=np.array(["tee", "trou\nsers", "sandal", "sneaker"]))
    refused(invoke("fit", "--npz", path, *TINY, "--out", tmp_path / "run"), "line break")
    assert not (tmp_path / "run").exists()


def lying_member(shape: tuple, dtype=np.uint8) -> bytes:
    """An npy member whose header declares `shape` but whose body holds a single byte."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                  "shape": shape})
    return header.getvalue() + b"\0"


@pytest.mark.parametrize("member, content, message", [
    ("x_train.npy", lying_member((10**9, 28, 28, 1)), "declares shape (1000000000, 28, 28, 1)"),
    ("x_train.npy", None, "declares 20,000 entries but `y_train` 240; give one label per training image"),
    ("owners.npy", None, "`owners` in"),
], ids=["header-lies", "more-images-than-labels", "more-owners-than-images"])
def test_npz_members_of_absurd_declared_size_are_refused_unread(small, tmp_path, member, content, message):
    path = write_npz(tmp_path / "absurd.npz", small, **{member[:-4]: None})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as bundle:  # zeros: a 15 MB member in 15 kB
        bundle.writestr(member, content or npy_bytes(np.zeros((20_000, 28, 28), np.uint8)))
    refused(invoke("fit", "--npz", path, *TINY, "--out", tmp_path / "run"), message)
    assert not (tmp_path / "run").exists()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_unused_npz_members_are_not_read(small, tmp_path):
    path = write_npz(tmp_path / "extra.npz", small, padding=np.zeros(1, np.uint8))
    with zipfile.ZipFile(path, "a") as bundle:  # a member that is not valid npy: reading it would fail
        bundle.writestr("unused.npy", b"not an array")
    assert len(data.load(npz=path).y_train) == len(small.y_train)


def rewrite_checksums(run, paths) -> None:
    """What an attacker who edits files would also do: rewrite their checksums in the
    manifest and reseal it (without a key, the digest is recomputable)."""
    import hashlib

    from keras_sisa.store import seal

    manifest = read_manifest(run)
    for path in paths:
        manifest["files"][str(path.relative_to(run))] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest.pop("digest")
    (run / "manifest.json").write_text(json.dumps(seal(manifest)))


def test_verify_refuses_a_broken_receipt_chain(fitted, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(fitted.directory, run)
    assert invoke("forget", run, "--class", FORGET, "--no-audit").exit_code == 0
    receipt_path = run / "receipts" / "0001.json"
    receipt = json.loads(receipt_path.read_text())
    name = sorted(receipt["checksums_after"])[0]
    receipt["checksums_after"][name] = "0" * 64  # an edit that rewrites the file checksums too
    receipt_path.write_text(json.dumps(receipt))
    rewrite_checksums(run, [receipt_path])
    refused(invoke("verify", run), f"The weights of {name} differ from what receipt 1 left")


def test_repair_on_a_pending_forget_says_to_finish_it(fitted, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(fitted.directory, run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "fitted"
    killed = start_cli("forget", str(run), "--class", FORGET, "--no-audit")
    wait_until(killed, lambda: read_manifest(run).get("status") == "forgetting")
    killed.kill()
    killed.wait()
    refused(invoke("repair", run), f"Run `keras-sisa forget {run}` to finish it first")
    assert invoke("forget", run).exit_code == 0


@pytest.mark.parametrize("edit", [
    lambda text: text.replace('"Sneaker"', '"Sneakers"'),
    lambda text: re.sub(r'"forgotten": \[[^\]]*\]', '"forgotten": []', text),
    lambda text: text.replace('"seed": 0', '"seed": 1'),
])
@pytest.mark.parametrize("command", ["info", "evaluate", "verify"])
def test_a_manifest_edited_by_hand_is_detected(forgot_one, tmp_path, edit, command):
    run = tmp_path / "run"
    shutil.copytree(forgot_one, run)
    manifest = run / "manifest.json"
    edited = edit(manifest.read_text())
    assert edited != manifest.read_text()
    manifest.write_text(edited)
    refused(invoke(command, run), "manifest.json does not match its digest")


@pytest.fixture(scope="module")
def forgot_one(fitted, tmp_path_factory):
    """A copy of the fitted run after forgetting FORGET."""
    run = tmp_path_factory.mktemp("forgot") / "run"
    shutil.copytree(fitted.directory, run)
    assert invoke("forget", run, "--class", FORGET, "--no-audit").exit_code == 0
    return run


def test_a_keyed_manifest_needs_its_key(fitted, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(fitted.directory, run)
    monkeypatch.setenv("KERAS_SISA_KEY", "s3cret")
    refused(invoke("info", run), "is not sealed with a key, but KERAS_SISA_KEY is set")


def resealed(run, monkeypatch, key: str | None, edit=lambda manifest: manifest) -> None:
    """Rewrites the run's manifest after `edit`, sealed under `key` (None: without a key, "":
    with no digest at all) as keras-sisa itself would, then sets the run's real key again."""
    from keras_sisa.store import seal

    manifest = read_manifest(run)
    manifest.pop("digest")
    manifest = edit(manifest)
    monkeypatch.delenv("KERAS_SISA_KEY")
    if key:
        monkeypatch.setenv("KERAS_SISA_KEY", key)
    (run / "manifest.json").write_text(json.dumps(manifest if key == "" else seal(manifest)))
    monkeypatch.setenv("KERAS_SISA_KEY", "s3cret")


@pytest.mark.parametrize("forger_key, message", [
    ("guess", "does not match its digest"), (None, "is not sealed with a key"), ("", "is not sealed with a key"),
], ids=["other-key", "no-key", "digest-removed"])
def test_a_keyed_manifest_rewritten_without_its_key_is_refused(fitted, tmp_path, monkeypatch, forger_key, message):
    run = tmp_path / "run"
    shutil.copytree(fitted.directory, run)
    monkeypatch.setenv("KERAS_SISA_KEY", "s3cret")
    resealed(run, monkeypatch, "s3cret")
    assert invoke("info", run).exit_code == 0
    resealed(run, monkeypatch, forger_key, lambda manifest: {**manifest, "forgotten": [0]})
    refused(invoke("info", run), message)


@pytest.mark.slow
def test_a_killed_export_leaves_no_scratch_after_the_next_export(fitted, tmp_path):
    out = tmp_path / "exported"
    partial = lambda: [p for p in os.listdir(tmp_path) if p.startswith(".partial-")]
    killed = start_cli("export", fitted.directory, "--out", str(out), "--format", "tflite")
    wait_until(killed, lambda: partial())
    killed.kill()
    killed.wait()
    assert partial() and not out.exists()
    assert invoke("export", fitted.directory, "--out", out, "--format", "tflite").exit_code == 0
    assert not partial() and (out / "model.tflite").exists()


def full_disk(result) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: The disk is full"), result.output


def test_a_full_disk_during_forget_leaves_it_pending_and_the_next_forget_finishes(fitted, mounted):
    disk = mounted("disk", "size=4m")
    run = disk / "run"
    shutil.copytree(fitted.directory, run)
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    filler.write_bytes(b"\0" * free)
    full_disk(invoke("forget", run, "--class", FORGET, "--no-audit"))
    filler.unlink()
    assert invoke("forget", run, "--class", FORGET, "--no-audit").exit_code == 0  # finishes what was begun
    assert FORGET in json.loads(invoke("info", run, "--json").stdout)["forgotten"]
    verified = invoke("verify", run, "--json")
    assert verified.exit_code == 0 and all(row["identical"] for row in json.loads(verified.stdout))


@pytest.mark.parametrize("command", ["export", "report"])
def test_a_full_disk_during_export_or_report_leaves_nothing(fitted, mounted, command):
    disk = mounted("disk", "size=64k")
    full_disk(invoke(command, fitted.directory, "--out", disk / "out"))
    assert os.listdir(disk) == []


def test_a_full_scratch_disk_during_verify_is_one_line(forgot_one, mounted, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(mounted("scratch", "size=4k")))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    full_disk(invoke("verify", forgot_one))


@pytest.mark.slow
def test_an_export_overtaken_by_a_forget_writes_nothing(fitted, tmp_path):
    run, out = tmp_path / "run", tmp_path / "exported"
    shutil.copytree(fitted.directory, run)
    exporting = start_cli("export", str(run), "--out", str(out))
    wait_until(exporting, lambda: any(p.startswith(".partial-") for p in os.listdir(tmp_path)))
    assert invoke("forget", run, "--class", FORGET, "--no-audit").exit_code == 0
    _, stderr = exporting.communicate(timeout=300)
    assert exporting.returncode == 1 and "changed while exporting" in stderr
    assert not out.exists()


def test_a_pickled_checkpoint_is_refused_in_one_line(fitted, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(fitted.directory, run)
    checkpoints = list((run / "checkpoints" / "gate").iterdir())
    for checkpoint in checkpoints:
        np.savez(checkpoint, body=np.array([{"code": "runs"}], dtype=object), allow_pickle=True)
    rewrite_checksums(run, checkpoints)
    refused(invoke("evaluate", run), "is not a plain npz of arrays")


def test_a_run_of_an_unknown_format_is_refused_with_one_line(fitted, tmp_path):
    from keras_sisa.store import seal

    run = tmp_path / "newer"
    shutil.copytree(fitted.directory, run)
    manifest = read_manifest(run)
    manifest.pop("digest")
    (run / "manifest.json").write_text(json.dumps(seal({**manifest, "format": "keras-sisa-run/2"})))
    refused(invoke("info", run), "is a run of format 'keras-sisa-run/2', which this keras-sisa")
