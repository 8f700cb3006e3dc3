"""The manifest's file form: what is written reads back the same, and nothing is lost."""

import pytest

from keras_sisa import InputError, TrainingConfig
from keras_sisa.manifest import FORMAT, Manifest, Status
from keras_sisa.store import Store


def new_manifest(**fields) -> Manifest:
    return Manifest(class_names=["a", "b", "c"], input_shape=(28, 28, 1), options={"shards": 2},
                    config=TrainingConfig(seed=3, threads=2), model_fn="keras_sisa.models:small_cnn",
                    gate_fn=None, created="2026-12-02T00:00:00+00:00", versions={"keras": "3"}, **fields)


def test_a_manifest_reads_back_from_its_file_as_it_was_written(tmp_path):
    store = Store(str(tmp_path / "run"))
    store.create()
    written = new_manifest(status=Status.FORGETTING, forgotten=[1], deleted_ids=[4, 9], receipts=[1],
                           pending_forget={"id": 2, "purged": False}, component_seconds={"gate": 1.5},
                           fit_seconds=1.5, files={"plan.json": "ab"}, owner_salt="00ff")
    store.write_manifest(written)
    read = store.read_manifest()
    assert read == written and read.status is Status.FORGETTING and read.input_shape == (28, 28, 1)


def test_a_run_that_forgot_nothing_has_no_forget_fields_and_keeps_fields_it_does_not_know():
    state = new_manifest().to_json() | {"future_field": {"kept": True}}
    manifest = Manifest.from_json(state, "runs/a")
    assert manifest.to_json() == state
    assert not {"pending_forget", "deleted_ids", "receipts", "owner_salt"} & set(state)
    assert state["format"] == FORMAT and state["status"] == "preparing"


def test_a_manifest_of_another_format_is_refused_in_one_line():
    with pytest.raises(InputError, match=r"^runs/a is a run of format 'keras-sisa-run/9', which this keras-sisa"):
        Manifest.from_json(new_manifest().to_json() | {"format": "keras-sisa-run/9"}, "runs/a")
