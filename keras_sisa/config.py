"""`TrainingConfig`: how every slice of every component trains, and the `Recipe` it gives
the gate and the experts."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from keras_sisa import replay
from keras_sisa.errors import InputError


class Recipe(NamedTuple):
    """The settings one kind of component (the gate, or the experts) trains with."""

    epochs: int | list[int] | None
    replay_ratio: float
    batch_size: int
    learning_rate: float
    ema: float = 0.0
    patience: int = 3
    max_epochs: int = 100
    check_steps: int = 64
    tier_epochs: int | None = None
    anneals: int = 0
    anneal_factor: float = 0.1
    tier_replay_ratio: float | None = None
    tier_ema: float = 0.0
    check_ema: float = 0.0

    @property
    def adaptive(self) -> bool:
        """Whether slices train until their held-out samples stop improving (`epochs` None)."""
        return self.epochs is None

    def adapts(self, is_tier: bool) -> bool:
        """Whether a slice (an owner tier's, or another) trains until its held-out samples
        stop improving, rather than a fixed number of epochs."""
        return self.adaptive and not (is_tier and self.tier_epochs is not None)

    def slice_replay_ratio(self, is_tier: bool) -> float:
        """Replayed samples per new sample in a slice: `tier_replay_ratio` in an owner tier, if set."""
        return self.tier_replay_ratio if is_tier and self.tier_replay_ratio is not None else self.replay_ratio

    def slice_ema(self, is_tier: bool) -> float:
        """Momentum of the weight average a fixed-epoch slice ends on: `tier_ema` in an owner tier, if set."""
        return self.tier_ema if is_tier and self.tier_ema else self.ema

    def slice_epochs(self, position: int, is_tier: bool = False) -> int:
        """Epochs of the slice at `position`: the number, or the schedule's entry (the last
        repeats); for an adaptive recipe, `tier_epochs` for an owner tier, else the epochs a
        slice with nothing held out trains."""
        if self.epochs is None:
            return self.patience + 1 if self.adapts(is_tier) else self.tier_epochs
        if isinstance(self.epochs, list):
            return self.epochs[min(position, len(self.epochs) - 1)]
        return self.epochs


@dataclasses.dataclass
class TrainingConfig:
    """How every slice of every component trains: the experts' settings, and the gate's.

    By default each slice trains until the loss on a held-out share of its data (and of
    the earlier slices' held-out data) has not improved for `patience` rounds, and keeps
    its best round's weights, so a recipe adapts to a dataset's size and difficulty.
    Explicit `epochs` or `gate_epochs` train a fixed number of epochs and hold nothing
    out. A run keeps the config it was fitted with. Each field is described where it is
    declared below; docs/benchmarks.md says how the defaults were measured.

    Example:

        config = keras_sisa.TrainingConfig(gate_epochs=2, seed=3)
        keras_sisa.SISAClassifier("runs/a", config=config)
    """

    #: Epochs per expert slice: None (until the held-out loss stops improving), a number,
    #: or a list by slice position whose last entry repeats.
    epochs: int | list[int] | None = None
    #: The same for the gate's slices.
    gate_epochs: int | list[int] | None = None
    #: Replayed samples per new sample in an expert's slice.
    replay_ratio: float = 1.0
    #: The same for the gate.
    gate_replay_ratio: float = 3.0
    #: "uniform", or "loss" to replay the samples the model gets most wrong.
    replay: str = "uniform"
    #: Weight every class equally within a slice, replayed ones included.
    balance: bool = True
    #: The experts' batch size.
    batch_size: int = 128
    #: The gate's batch size.
    gate_batch_size: int = 128
    #: The experts' Adam learning rate.
    learning_rate: float = 1e-3
    #: The gate's Adam learning rate.
    gate_learning_rate: float = 2e-3
    #: End each fixed-epoch gate slice on a moving average of its weights, sampled every
    #: 4 batches with this momentum; 0 turns it off.
    gate_ema: float = 0.0
    #: Share of each class of a slice held out to steer adaptive training.
    validation_share: float = 0.1
    #: The most samples of a class that a slice holds out.
    validation_cap: int = 200
    #: An adaptive slice checks its held-out loss every epoch, or every `check_steps`
    #: steps when an epoch is longer (a round).
    check_steps: int = 64
    #: Rounds without improvement after which an adaptive slice stops.
    patience: int = 3
    #: The most epochs an adaptive slice trains.
    max_epochs: int = 100
    #: Plateaus of an adaptive slice that lower its learning rate (by `anneal_factor`,
    #: from its best weights) before the next one stops it.
    anneals: int = 0
    #: What each anneal multiplies the learning rate by.
    anneal_factor: float = 0.1
    #: Epochs of each owner-tier slice of an adaptive recipe, holding nothing out: the
    #: slice refines a trained model, and a fixed short fit keeps a small owner's forget
    #: cheap. None trains tiers like the other slices.
    tier_epochs: int | None = 2
    #: Replayed samples per new sample in an owner-tier slice, gate and experts alike, so a
    #: person's forget retrains little; None replays as in the component's other slices.
    tier_replay_ratio: float | None = 1.0
    #: End each fixed-epoch owner-tier slice, gate and experts alike, on a moving average of
    #: its weights with this momentum (there it takes `gate_ema`'s place); 0 turns it off.
    #: Less replay leaves a tier slice on noisier weights, which the average takes back.
    tier_ema: float = 0.9
    #: Adaptive slices score, and keep, a moving average of their weights with this momentum
    #: (sampled every 4 batches) rather than the raw weights, whose noise at a high
    #: learning rate makes where training stops a draw; 0 turns it off. Higher momentum
    #: trains the core slices longer: 0.96 scored 0.3 points more on the full data but made
    #: a batch of people's refit dearer, 0 is cheaper but its stop is a draw
    #: (docs/benchmarks.md). A run keeps its own.
    check_ema: float = 0.9
    #: The seed every random choice derives from, with the component and slice.
    seed: int = 0
    #: TensorFlow's thread-pool size while training (default: this machine's cores); it
    #: changes how sums are split, so every process training a run uses the same.
    threads: int | None = None
    #: Heads train this many outputs wide (or a multiple), padding included, so one
    #: traced model serves every head size.
    head_width: int = 8

    def __post_init__(self):
        for name in ("epochs", "gate_epochs"):
            value = getattr(self, name)
            if value is None:
                continue
            is_schedule = isinstance(value, (list, tuple))
            entries = list(value) if is_schedule else [value]
            if not entries or not all(_positive_whole(e) for e in entries):
                raise InputError(f"Expected {name} to be None, a positive whole number or a list of them, "
                                 f"got {value!r}.")
            setattr(self, name, [int(e) for e in entries] if is_schedule else int(value))
        if self.tier_epochs is not None and not _positive_whole(self.tier_epochs):
            raise InputError(f"Expected tier_epochs (--tier-epochs) to be None (auto) or a positive whole number, "
                             f"got {self.tier_epochs!r}.")
        for name in ("batch_size", "gate_batch_size", "head_width", "patience", "max_epochs", "validation_cap",
                     "check_steps"):
            if not _positive_whole(getattr(self, name)):
                raise InputError(f"Expected {name} to be a positive whole number, got {getattr(self, name)!r}.")
        for name in ("replay_ratio", "gate_replay_ratio", "tier_replay_ratio"):
            value = getattr(self, name)
            if value is None and name == "tier_replay_ratio":
                continue
            if not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value < 0:
                raise InputError(f"Expected {name} (--{name.replace('_', '-')}) to be zero or more, got {value!r}.")
        if not (isinstance(self.anneals, (int, np.integer)) and not isinstance(self.anneals, bool)
                and self.anneals >= 0):
            raise InputError(f"Expected anneals (--anneals) to be zero or a positive whole number, got {self.anneals!r}.")
        if not 0 < self.anneal_factor < 1:
            raise InputError(f"Expected anneal_factor (--anneal-factor) above 0 and below 1, got {self.anneal_factor!r}.")
        for name in ("gate_ema", "tier_ema", "check_ema"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"Expected {name} (--{name.replace('_', '-')}) from 0 (off) to below 1, "
                                 f"got {getattr(self, name)!r}.")
        if not 0 < self.validation_share < 1:
            raise InputError(f"Expected validation_share above 0 and below 1, got {self.validation_share!r}.")
        if self.threads is not None and not _positive_whole(self.threads):
            raise InputError(f"Expected threads to be a positive whole number, got {self.threads!r}.")
        for name in ("learning_rate", "gate_learning_rate"):
            if not getattr(self, name) > 0:
                raise InputError(f"Expected {name} above zero, got {getattr(self, name)!r}.")
        if self.replay not in replay.STRATEGIES:
            raise InputError(f"Unknown replay strategy {self.replay!r}; expected one of "
                             f"{replay.STRATEGIES}.")

    @classmethod
    def from_manifest(cls, fields: dict) -> TrainingConfig:
        """The config a run was fitted with, filling in what older runs did before a field existed:
        unpadded heads, the gate on the experts' batch size and learning rate, no averaging,
        owner tiers trained like the other slices, no annealing, no tier or checked average."""
        older = {"head_width": 1, "gate_batch_size": fields["batch_size"],
                 "gate_learning_rate": fields["learning_rate"], "gate_ema": 0.0, "tier_epochs": None,
                 "anneals": 0, "tier_replay_ratio": None, "tier_ema": 0.0,
                 "check_ema": 0.0}
        return cls(**{**older, **fields})

    def recipe(self, is_gate: bool) -> Recipe:
        """The settings the gate, or an expert, trains with."""
        if is_gate:
            return Recipe(self.gate_epochs, self.gate_replay_ratio, self.gate_batch_size,
                          self.gate_learning_rate, self.gate_ema, self.patience, self.max_epochs,
                          self.check_steps, self.tier_epochs, self.anneals, self.anneal_factor,
                          self.tier_replay_ratio, self.tier_ema, self.check_ema)
        return Recipe(self.epochs, self.replay_ratio, self.batch_size, self.learning_rate, 0.0,
                      self.patience, self.max_epochs, self.check_steps, self.tier_epochs, self.anneals,
                      self.anneal_factor, self.tier_replay_ratio, self.tier_ema, self.check_ema)


def _positive_whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1
