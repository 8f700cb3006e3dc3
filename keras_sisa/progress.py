"""One progress bar over every slice a command trains, as Keras shows one over a fit's epochs."""

from __future__ import annotations

import keras

from keras_sisa.checkpoints import resume_point
from keras_sisa.plan import Plan
from keras_sisa.store import Store

POLL_SECONDS = 1.0  # how often a bar over other processes' training counts their checkpoints


class SliceProgress:
    """Counts the slices of `names` as they are checkpointed (trained or not) on a
    `keras.utils.Progbar`, whose ETA is the mean time per slice so far times the slices left.

    Training in this process calls `advance` after each slice; while workers or Ray tasks
    train, `poll` counts the checkpoints they have written to the store.
    """

    def __init__(self, store: Store, plan: Plan, names: list[str]):
        self.store = store
        self.components = [plan.component(n) for n in names]
        self.start = self._checkpointed()
        self.done = 0
        self.bar = keras.utils.Progbar(sum(len(c.slices) for c in self.components) - self.start,
                                       unit_name="slice")

    def advance(self) -> None:
        self._show(self.done + 1)

    def poll(self) -> None:
        self._show(self._checkpointed() - self.start)

    def _checkpointed(self) -> int:
        return sum(resume_point(self.store, c) for c in self.components)

    def _show(self, done: int) -> None:
        if done > self.done:
            self.done = done
            self.bar.update(done, finalize=done >= self.bar.target)
