"""Forgetting: exactness against a fresh fit, purge, label space, receipts, bad input."""

import hashlib
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import fit_small
from keras_sisa import InputError, load
from keras_sisa.checkpoints import read_state
from keras_sisa.cli.main import main
from keras_sisa.store import MANIFEST


def copy_run(fitted, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(fitted.directory, target)
    return load(str(target), model_fn="tiny_models:tiny_cnn", gate_fn="tiny_models:tiny_cnn")


def refit_without(small, tmp_path, plan, deleted_ids, **options):
    """A fresh fit of `plan` on the data with `deleted_ids` removed: the gold standard."""
    keep = ~np.isin(small.ids, list(deleted_ids))
    import dataclasses
    rest = dataclasses.replace(small, x_train=small.x_train[keep], y_train=small.y_train[keep],
                               ids=small.ids[keep])
    return fit_small(tmp_path / "refit", rest, plan=plan, **options)


def digests(sisa):
    return {c.name: sisa.component_state(c.name).digest() for c in sisa.plan.components}


def stored_image_hashes(sisa):
    """The hash of every image in every array file of the run."""
    hashes = set()
    for path in sisa.store.files():
        if path.endswith(".npz"):
            for key, array in sisa.store.read_arrays(path).items():
                if array.ndim == 4:
                    hashes |= {hashlib.sha256(image.tobytes()).hexdigest() for image in array}
    return hashes


def test_forget_class_matches_refit_without_it(fitted, small, tmp_path):
    sisa = copy_run(fitted, tmp_path)
    original_plan = sisa.plan
    receipt = sisa.forget(classes=["Sandal"], verbose=0)
    sandal = small.class_names.index("Sandal")
    deleted = small.ids[small.y_train == sandal]
    assert receipt["deleted_count"] == len(deleted)
    refit = refit_without(small, tmp_path, original_plan.without(deleted, [sandal]), deleted)
    assert digests(sisa) == digests(refit)
    assert sisa.verify() and all(row["identical"] for row in sisa.verify())


def test_forget_samples_matches_refit_without_them(fitted, small, tmp_path):
    sisa = copy_run(fitted, tmp_path)
    original_plan = sisa.plan
    chosen = np.random.default_rng(0).choice(small.ids, 12, replace=False)
    receipt = sisa.forget(samples=chosen.tolist(), verbose=0)
    assert receipt["deleted_count"] == 12 and receipt["classes"] == []
    refit = refit_without(small, tmp_path, original_plan.without(chosen), chosen)
    assert digests(sisa) == digests(refit)


def test_epoch_schedules_apply_by_position_and_forgets_stay_exact(fitted, small, tmp_path):
    schedules = dict(epochs=[2, 1], gate_epochs=[2, 2, 1])
    sisa = fit_small(tmp_path / "scheduled", small, **schedules)
    expert = sisa.plan.experts[0]
    first, last = (s.id for s in (expert.slices[0], expert.slices[-1]))
    # The first slice trains 2 epochs, as in the fixture's run; the second only 1.
    state = lambda run, slice_id: read_state(run.store, expert.name, slice_id).digest()
    assert state(sisa, first) == state(fitted, first) and state(sisa, last) != state(fitted, last)
    original_plan = sisa.plan
    first_class = original_plan.gate.slices[0].classes[0]  # every later gate slice moves up a position
    deleted = small.ids[small.y_train == first_class]
    sisa.forget(classes=[first_class], verbose=0, audit=False)
    refit = refit_without(small, tmp_path, original_plan.without(deleted, [first_class]), deleted, **schedules)
    assert digests(sisa) == digests(refit)
    reloaded = load(sisa.directory, model_fn="tiny_models:tiny_cnn", gate_fn="tiny_models:tiny_cnn")
    assert reloaded.config.gate_epochs == [2, 2, 1]
    assert all(row["identical"] for row in reloaded.verify())


def test_forgotten_class_has_no_output_and_no_stored_image(fitted, small, tmp_path):
    sisa = copy_run(fitted, tmp_path)
    trouser = small.class_names.index("Trouser")
    sisa.forget(classes=["Trouser"], verbose=0)
    assert trouser not in sisa.classes
    assert sisa.predict(small.x_test).shape == (len(small.x_test), 3)
    assert "Trouser" not in sisa.evaluate()["per_class"]
    assert sisa.info()["forgotten"] == ["Trouser"]
    deleted = {hashlib.sha256(image.tobytes()).hexdigest()
               for image in np.concatenate([small.x_train[small.y_train == trouser],
                                            small.x_test[small.y_test == trouser]])}
    assert not deleted & stored_image_hashes(sisa)


def test_untouched_components_keep_their_weights(fitted, small, tmp_path):
    sisa = copy_run(fitted, tmp_path)
    before = digests(sisa)
    receipt = sisa.forget(classes=["Sneaker"], verbose=0)
    untouched = set(before) - set(receipt["rewound"])
    assert untouched, "a class forget should leave some expert alone"
    after = digests(sisa)
    assert all(before[name] == after[name] for name in untouched)
    assert receipt["checksums_before"] == before and receipt["checksums_after"] == after


def test_receipt_is_stored_and_listed(fitted, tmp_path):
    sisa = copy_run(fitted, tmp_path)
    sisa.forget(classes=["Sneaker"], verbose=0)
    again = load(sisa.directory, model_fn="tiny_models:tiny_cnn", gate_fn="tiny_models:tiny_cnn")
    (receipt,) = again.info()["receipts"]
    assert receipt["classes"] == ["Sneaker"] and "gate" in receipt["rewound"]


def test_forgetting_a_forgotten_class_is_a_noop(fitted, tmp_path):
    sisa = copy_run(fitted, tmp_path)
    sisa.forget(classes=["Sneaker"], verbose=0)
    before = digests(sisa)
    result = sisa.forget(classes=["Sneaker"], verbose=0)
    assert result["noop"] and "already forgotten" in result["message"]
    assert digests(sisa) == before


@pytest.mark.parametrize("options, message", [
    (dict(classes=["Sneakers"]), "Did you mean 'Sneaker'"),
    (dict(samples=[10 ** 9]), "Unknown sample id 1000000000"),
    (dict(classes=["T-shirt/top", "Trouser", "Sandal", "Sneaker"]), "Cannot forget every class"),
])
def test_bad_forget_requests_change_nothing(fitted, tmp_path, options, message):
    sisa = copy_run(fitted, tmp_path)
    files = {p: sisa.store.read_bytes(p) for p in sisa.store.files()}
    with pytest.raises(InputError, match=message):
        sisa.forget(**options, verbose=0)
    assert {p: sisa.store.read_bytes(p) for p in sisa.store.files()} == files


def test_cli_forget_and_verify(fitted, small, tmp_path):
    sisa = copy_run(fitted, tmp_path)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(i) for i in small.ids[:5]) + "\n")
    runner = CliRunner()
    result = runner.invoke(main, ["forget", sisa.directory, "--class", "Sandal", "--samples", str(ids)])
    assert result.exit_code == 0, result.output
    assert "Forgot" in result.output and "Receipt 1" in result.output
    verified = runner.invoke(main, ["verify", sisa.directory])
    assert verified.exit_code == 0 and "MISMATCH" not in verified.output and "identical" in verified.output
    bad = runner.invoke(main, ["forget", sisa.directory, "--class", "Dog"])
    assert bad.exit_code == 2 and bad.output.startswith("Error: Unknown class 'Dog'")


def test_a_run_fitted_before_head_width_and_gate_recipes_keeps_them(small, tmp_path):
    """Runs from before `head_width`, the gate's own batch size and learning rate, and its
    weight averaging have none in their manifest: forgets and verify on them must train
    unpadded, and the gate as the experts without averaging, as their fit did, or their
    bits would no longer match a refit."""
    sisa = fit_small(tmp_path / "old", small, head_width=1, batch_size=16, gate_batch_size=16,
                     learning_rate=2e-3, gate_learning_rate=2e-3, gate_ema=0.0)
    manifest = sisa.store.read_json(MANIFEST)
    for field in ("head_width", "gate_batch_size", "gate_learning_rate", "gate_ema"):
        del manifest["config"][field]
    sisa.store.write_json(MANIFEST, manifest)
    old = load(sisa.directory, model_fn="tiny_models:tiny_cnn", gate_fn="tiny_models:tiny_cnn")
    config = old.config
    assert (config.head_width, config.gate_batch_size, config.gate_learning_rate, config.gate_ema) == (1, 16, 2e-3, 0)
    old.forget(classes=["Sneaker"], verbose=0)
    assert all(row["identical"] for row in old.verify())
