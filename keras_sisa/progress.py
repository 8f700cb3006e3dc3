"""One progress bar over every slice a command trains, as Keras shows one over a fit's epochs."""

from __future__ import annotations

import keras


class SliceProgress:
    """Counts slices as they are checkpointed (trained or not) on a `keras.utils.Progbar`,
    whose ETA is the mean time per slice so far times the slices left."""

    def __init__(self, total: int):
        self.done = 0
        self.bar = keras.utils.Progbar(total, unit_name="slice")

    def advance(self) -> None:
        self.done += 1
        self.bar.update(self.done, finalize=self.done >= self.bar.target)
