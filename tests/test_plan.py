"""The partition plan: class isolation, balance, slice order, random shards, removal."""

import numpy as np
import pytest

from keras_sisa import InputError
from keras_sisa.plan import Plan, class_plan, random_plan


def test_every_class_lives_in_exactly_one_shard(fashion):
    plan = class_plan(fashion.y_train, fashion.ids, shards=5)
    owners = {}
    for expert in plan.experts:
        for s in expert.slices:
            for c in s.classes:
                assert c not in owners, f"class {c} in {owners.get(c)} and {expert.name}"
                owners[c] = expert.name
            assert set(fashion.y_train[np.isin(fashion.ids, s.sample_ids)]) == set(s.classes)
    assert sorted(owners) == list(range(10))


def test_shards_are_balanced_by_sample_count(fashion):
    # Unequal classes: keep 6000, 3000, 2000, ... images, so balance needs a real assignment.
    keep = np.concatenate([np.flatnonzero(fashion.y_train == c)[:6000 // (c + 1)] for c in range(10)])
    y, ids = fashion.y_train[keep], fashion.ids[keep]
    plan = class_plan(y, ids, shards=3)
    sizes = [len(e.sample_ids) for e in plan.experts]
    largest_class = max(np.bincount(y))
    assert sum(sizes) == len(ids)
    assert max(sizes) - min(sizes) <= largest_class


def test_class_order_puts_named_classes_last_in_every_component(fashion):
    plan = class_plan(fashion.y_train, fashion.ids, shards=5, class_order=[8, 2])
    assert [s.classes for s in plan.gate.slices][-2:] == [[8], [2]]
    for expert in plan.experts:
        order = [c for s in expert.slices for c in s.classes]
        named = [c for c in order if c in (8, 2)]
        assert order[len(order) - len(named):] == named


def test_classes_per_slice_groups_classes_and_the_gate_learns_unnamed_ones_at_once(fashion):
    plan = class_plan(fashion.y_train, fashion.ids, shards=2, classes_per_slice=2, class_order=[4, 5, 6, 7])
    assert all(len(s.classes) <= 2 for e in plan.experts for s in e.slices)
    assert [s.id for s in plan.gate.slices] == ["c0+c1+c2+c3+c8+c9", "c4+c5", "c6+c7"]
    assert [s.id for s in class_plan(fashion.y_train, fashion.ids, shards=5).gate.slices] == [
        "+".join(f"c{c}" for c in range(10))]


def test_gate_sees_every_sample_and_experts_partition_them(fashion):
    plan = class_plan(fashion.y_train, fashion.ids, shards=5)
    expert_ids = sorted(i for e in plan.experts for i in e.sample_ids)
    assert expert_ids == sorted(fashion.ids.tolist())
    assert sorted(plan.gate.sample_ids) == expert_ids


def test_random_plan_partitions_samples_without_a_gate(fashion):
    plan = random_plan(fashion.y_train[:1000], fashion.ids[:1000], shards=4, slices=3, seed=0)
    assert plan.gate is None and len(plan.experts) == 4
    ids = sorted(i for e in plan.experts for i in e.sample_ids)
    assert ids == list(range(1000))
    assert all(len(e.slices) == 3 for e in plan.experts)


def test_plan_without_removes_samples_and_empty_slices_and_round_trips(fashion):
    plan = class_plan(fashion.y_train, fashion.ids, shards=5)
    gone = fashion.ids[fashion.y_train == 3]
    smaller = plan.without(sample_ids=gone, classes=[3])
    assert "c3" not in [s.id for e in smaller.experts for s in e.slices]
    assert len(smaller.gate.sample_ids) == len(plan.gate.sample_ids) - len(gone)
    assert all(3 not in s.classes for c in smaller.components for s in c.slices)
    assert Plan.from_json(smaller.to_json()) == smaller


@pytest.mark.parametrize("shards", [0, -1, 11])
def test_bad_shard_counts_are_refused(fashion, shards):
    with pytest.raises(InputError, match="shards"):
        class_plan(fashion.y_train, fashion.ids, shards=shards)


@pytest.mark.parametrize("make, message", [
    (lambda y, ids: class_plan(y, ids, shards=0), r"shards \(--shards\)"),
    (lambda y, ids: class_plan(y, ids, shards=2, classes_per_slice=0), r"classes_per_slice \(--classes-per-slice\)"),
    (lambda y, ids: random_plan(y, ids, shards=2, slices=0, seed=0), r"slices \(--slices\)"),
])
def test_bad_counts_name_the_python_argument_and_its_flag(make, message):
    y = np.repeat(np.arange(4), 10)
    with pytest.raises(InputError, match=message):
        make(y, np.arange(len(y)))
