"""What a forget will cost: the training it redoes, priced by what each slice took at fit.

A forget retrains, in each component it touches, the slices from the first one holding
deleted data on; each is priced at the seconds the same slice took when it was last
trained (its checkpoint's history), which is what `keras-sisa info` shows per class.
"""

from __future__ import annotations

import numpy as np

from keras_sisa.plan import Plan
from keras_sisa.config import TrainingConfig
from keras_sisa.training import trains


def slice_seconds(plan: Plan, histories: dict[str, dict[str, dict]], config: TrainingConfig,
                  component_seconds: dict[str, float]) -> dict[str, dict[str, float]]:
    """Seconds per slice of every component, from the slices' training histories; a run fitted
    before histories were kept shares each component's fit time by epochs times samples."""
    prices = {}
    for component in plan.components:
        logged = histories.get(component.name, {})
        if all("seconds" in logged.get(s.id, {}) or logged.get(s.id, {}).get("epochs") == 0
               for s in component.slices):
            prices[component.name] = {s.id: logged[s.id].get("seconds", 0.0) for s in component.slices}
            continue
        recipe = config.recipe(component.is_gate)
        work = {s.id: recipe.slice_epochs(k, s.is_tier) * len(s.sample_ids) for k, s in enumerate(component.slices)}
        total = sum(work.values()) or 1
        spent = component_seconds.get(component.name, 0.0)
        prices[component.name] = {key: spent * value / total for key, value in work.items()}
    return prices


def retraining_seconds(plan: Plan, deleted: set[int], classes, prices: dict[str, dict[str, float]]) -> float:
    """The training seconds a forget of `deleted` samples (and `classes`) would redo."""
    new_plan = plan.without(deleted, classes)
    remaining = {c.name for c in new_plan.components}
    shard = {c: e.shard for e in new_plan.experts for s in e.slices for c in s.classes}
    total = 0.0
    for component in plan.components:
        first = next((k for k, s in enumerate(component.slices) if deleted.intersection(s.sample_ids)), None)
        if first is None or component.name not in remaining:
            continue
        outputs = set()
        for k, s in enumerate(new_plan.component(component.name).slices):
            outputs |= {shard[c] if component.is_gate else c for c in s.classes}
            if k >= first and trains(len(outputs)):
                total += prices[component.name].get(s.id, 0.0)
    return total


def owner_seconds(plan: Plan, owners: np.ndarray, ids: np.ndarray, prices: dict[str, dict[str, float]]) -> np.ndarray:
    """Per owner (in `np.unique(owners)` order), the training seconds forgetting all its
    images would redo: in each component, the training slices from its first one on."""
    slice_of, tails = {}, {}
    for component in plan.components:
        outputs, trained = set(), []
        shard = plan.shard_of() if component.is_gate else None
        for s in component.slices:
            outputs |= {shard[i] for i in s.sample_ids} if shard else set(s.classes)
            trained.append(prices[component.name].get(s.id, 0.0) if trains(len(outputs)) else 0.0)
        tails[component.name] = np.cumsum(trained[::-1])[::-1]
        slice_of[component.name] = {i: k for k, s in enumerate(component.slices) for i in s.sample_ids}
    unique, inverse = np.unique(owners, return_inverse=True)
    seconds = np.zeros(len(unique))
    for name, where in slice_of.items():
        first = np.full(len(unique), len(tails[name]))
        for owner, i in zip(inverse, ids.tolist()):
            k = where.get(i)
            if k is not None and k < first[owner]:
                first[owner] = k
        touched = first < len(tails[name])
        seconds[touched] += tails[name][first[touched]]
    return seconds
