"""Replay selection and its use during sliced training."""

import numpy as np

from keras_sisa import replay
from keras_sisa.checkpoints import read_state


def test_uniform_selection_is_seeded_and_without_repeats():
    pool = np.arange(100, 200)
    first = replay.select(pool, 30, "uniform", seed=7)
    assert np.array_equal(first, replay.select(pool[::-1], 30, "uniform", seed=7))
    assert len(set(first.tolist())) == 30 and set(first.tolist()) <= set(pool.tolist())


def test_loss_selection_prefers_high_loss_samples():
    pool = np.arange(1000)
    losses = lambda ids: np.where(ids < 100, 10.0, 0.01)
    chosen = replay.select(pool, 100, "loss", seed=0, losses=losses)
    assert np.mean(chosen < 100) > 0.8


def test_replay_at_slice_k_draws_only_from_earlier_slices(fitted):
    for component in fitted.plan.components:
        earlier = set()
        for k, s in enumerate(component.slices):
            replayed = set(read_state(fitted.store, component.name, s.id).replay_ids)
            assert replayed <= earlier, f"{component.name} slice {s.id} replays later samples"
            if k:
                assert replayed, f"{component.name} slice {s.id} replays nothing"
            earlier |= set(s.sample_ids)
