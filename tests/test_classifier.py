"""The Python API: sliced training, checkpoints, determinism, the ensemble, save and load."""

import keras
import numpy as np
import pytest

import keras_sisa
from conftest import fit_small
from keras_sisa import InputError, costs
from keras_sisa.checkpoints import checkpoint_path, read_state
from keras_sisa.store import Store
from keras_sisa.tasks import load_samples
from keras_sisa.training import train_component
from tiny_models import no_dense_head, softmax_mlp, tiny_cnn


def test_a_checkpoint_exists_after_every_slice_of_every_component(fitted):
    for component in fitted.plan.components:
        assert fitted.store.exists(checkpoint_path(component.name, "init"))
        for s in component.slices:
            assert fitted.store.exists(checkpoint_path(component.name, s.id))


def test_heads_grow_one_class_at_a_time_in_slice_order(fitted):
    for expert in fitted.plan.experts:
        seen = []
        for s in expert.slices:
            seen += s.classes
            assert read_state(fitted.store, expert.name, s.id).outputs == seen


def test_two_fits_with_one_seed_are_bit_identical(small, tmp_path, fitted):
    again = fit_small(tmp_path / "again", small)
    for component in fitted.plan.components:
        assert again.component_state(component.name).digest() == fitted.component_state(component.name).digest()


def test_each_component_trained_alone_matches_the_fit(fitted, tmp_path):
    """A fit reuses one compiled model across components; trained alone, each gets the same bits."""
    samples = load_samples(fitted.store, fitted.plan)
    for component in fitted.plan.components:
        alone = train_component(Store(str(tmp_path / component.name)), fitted.plan, component.name,
                                tiny_cnn, fitted.input_shape, samples, fitted.config, verbose=0)
        assert alone.digest() == fitted.component_state(component.name).digest()


def test_a_different_seed_gives_different_weights(small, tmp_path, fitted):
    other = fit_small(tmp_path / "other", small, seed=1)
    assert other.component_state("gate").digest() != fitted.component_state("gate").digest()


def test_predict_gives_probabilities_over_the_label_space(fitted, small):
    probabilities = fitted.predict(small.x_test)
    assert probabilities.shape == (len(small.x_test), 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    report = fitted.evaluate()
    assert set(report["per_class"]) == set(small.class_names)
    assert report["accuracy"] > 0.5  # four real classes; chance is 0.25


def test_load_reopens_the_run_with_the_same_predictions(fitted, small):
    reopened = keras_sisa.load(fitted.directory, model_fn="tiny_models:tiny_cnn", gate_fn="tiny_models:tiny_cnn")
    np.testing.assert_array_equal(reopened.predict(small.x_test), fitted.predict(small.x_test))
    assert reopened.info()["classes"] == small.class_names


def test_saved_keras_file_reloads_with_the_same_outputs(fitted, small, tmp_path):
    path = str(tmp_path / "ensemble.keras")
    fitted.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(small.x_test.astype("float32"), verbose=0),
                               fitted.predict(small.x_test), atol=1e-6)


def test_softmax_builders_and_random_strategy_work(small, tmp_path):
    sisa = fit_small(tmp_path / "random", small, model_fn=softmax_mlp, strategy="random", slices=2)
    assert sisa.plan.gate is None
    assert sisa.predict(small.x_test).shape == (len(small.x_test), 4)
    assert sisa.evaluate()["accuracy"] > 0.5


def test_builder_without_dense_head_fails_before_anything_is_written(small, tmp_path):
    with pytest.raises(InputError, match="must end in a Dense"):
        fit_small(tmp_path / "bad", small, model_fn=no_dense_head)
    assert not (tmp_path / "bad").exists()


def test_fit_refuses_a_directory_that_holds_something_else(small, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        fit_small(tmp_path / "busy", small)
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


def test_info_prices_a_class_forget_at_the_gate_fit_and_a_named_class_below_it(fitted, small, tmp_path):
    expected = fitted.info()["expected_forget_seconds"]
    gate_seconds = sum(h["seconds"] for h in fitted.histories()["gate"].values())
    assert list(expected) == fitted.info()["classes"]
    assert all(abs(seconds - gate_seconds) < 1e-9 for seconds in expected.values())  # pairs retrain nothing
    named = fit_small(tmp_path / "named", small, class_order=[3])
    costs = named.info()["expected_forget_seconds"]
    assert costs["Sneaker"] < min(v for k, v in costs.items() if k != "Sneaker")


def test_an_expert_left_with_one_class_is_priced_at_no_training(fitted):
    prices = costs.slice_seconds(fitted.plan, fitted.histories(), fitted.config, {})
    prices["gate"] = {key: 0.0 for key in prices["gate"]}
    pair = next(e for e in fitted.plan.experts if len(e.slices) == 2)
    first = pair.slices[0].classes[0]
    deleted = set(pair.slices[0].sample_ids)
    assert costs.retraining_seconds(fitted.plan, deleted, [first], prices) == 0.0
    assert costs.retraining_seconds(fitted.plan, set(pair.slices[0].sample_ids[:1]), [], prices) > 0.0
