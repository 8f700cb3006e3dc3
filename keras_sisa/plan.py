"""The partition plan: which samples each shard holds and each component's ordered slices.

Computed once at fit and saved as JSON; a deletion only ever removes entries from it,
so `plan.without(...)` is exactly the plan that a fit without that data would follow.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_sisa.errors import InputError
from keras_sisa.seeds import seed_for

GATE = "gate"
# Owner-tier slices are named TIER_PREFIX + their tier number: o1, o2, ...
TIER_PREFIX = "o"
# Shards of the random strategy when none are given, as in the original SISA paper's experiments.
RANDOM_SHARDS = 5


@dataclasses.dataclass
class Slice:
    """One training step of a component: the samples it adds, named by a stable id."""

    id: str
    classes: list[int]
    sample_ids: list[int]

    @property
    def is_tier(self) -> bool:
        """Whether the slice holds an owner tier: small owners' images after the core."""
        return self.id.startswith(TIER_PREFIX)


@dataclasses.dataclass
class Component:
    """An independently trained model: a shard's expert, or the gate over all shards."""

    name: str
    slices: list[Slice]

    @property
    def is_gate(self) -> bool:
        return self.name == GATE

    @property
    def shard(self) -> int:
        """The shard number of an expert (its output key in the gate)."""
        return int(self.name.rsplit("-", 1)[1])

    @property
    def sample_ids(self) -> list[int]:
        return [i for s in self.slices for i in s.sample_ids]


def expert_name(shard: int) -> str:
    return f"expert-{shard}"


@dataclasses.dataclass
class Plan:
    """Shards and the slices of every component; plain data, readable as JSON."""

    strategy: str
    components: list[Component]

    @property
    def experts(self) -> list[Component]:
        return [c for c in self.components if not c.is_gate]

    @property
    def gate(self) -> Component | None:
        return next((c for c in self.components if c.is_gate), None)

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def shard_of(self) -> dict[int, int]:
        """Maps every sample id to the shard that holds it (the gate's target)."""
        return {i: c.shard for c in self.experts for i in c.sample_ids}

    def without(self, sample_ids=(), classes=()) -> Plan:
        """This plan with the given samples and classes removed; empty slices and components go."""
        drop, gone = set(int(i) for i in sample_ids), set(int(c) for c in classes)
        components = []
        for component in self.components:
            slices = []
            for s in component.slices:
                kept = [i for i in s.sample_ids if i not in drop]
                if kept:
                    slices.append(Slice(s.id, [c for c in s.classes if c not in gone], kept))
            if slices:
                components.append(Component(component.name, slices))
        return Plan(self.strategy, components)

    def to_json(self) -> dict:
        """The plan as JSON values; `dataclasses.asdict` gives the same but took 0.07 s per write."""
        return {"strategy": self.strategy, "components": [
            {"name": c.name, "slices": [{"id": s.id, "classes": list(s.classes), "sample_ids": list(s.sample_ids)}
                                        for s in c.slices]} for c in self.components]}

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        components = [Component(c["name"], [Slice(**s) for s in c["slices"]]) for c in data["components"]]
        return cls(data["strategy"], components)


def class_plan(y: np.ndarray, ids: np.ndarray, shards: int, classes_per_slice: int = 1,
               class_order: list[int] | None = None, x: np.ndarray | None = None,
               tiers: np.ndarray | None = None) -> Plan:
    """Class-isolated shards balanced by sample count; experts meet their classes one slice at a time.

    Every class lives in exactly one shard. With images `x`, classes that look alike
    (close mean images) share a shard, so the expert makes the fine distinction and
    the gate only the coarse one; without them, classes are dealt largest first to
    the lightest shard. Experts see their classes `classes_per_slice` at a time, the
    classes named in `class_order` last. The gate, labelled by shard, learns every
    unnamed class in one first slice, then the named ones `classes_per_slice` at a
    time in the order given: forgetting a named class redoes only the gate's slices
    from its own on, forgetting another one redoes the whole gate. With owner `tiers`
    (`owners.tiers_of`), each expert's tier images follow its class slices; the gate learns
    the core, and the tier images of one-class experts in its own trailing tier slices.
    """
    present = [int(c) for c in np.unique(y)]
    order = _order(present, class_order)
    _check_counts(shards=shards, classes_per_slice=classes_per_slice)
    if shards > len(present):
        raise InputError(f"shards={shards} (--shards) is more than the {len(present)} classes present; "
                         "class-isolated shards need at least one class each.")
    size = {c: int(np.sum(y == c)) for c in present}
    members = _similar_groups(x, y, order, size, shards) if x is not None else _dealt(order, size, shards)
    rank = {c: k for k, c in enumerate(order)}
    members.sort(key=lambda m: min(rank[c] for c in m))
    tiers = np.zeros(len(y), np.int64) if tiers is None else np.asarray(tiers)
    core = tiers == 0
    experts = []
    for k, m in enumerate(members):
        slices = _class_slices(sorted(m, key=rank.get), y[core], ids[core], classes_per_slice)
        for t in range(1, int(tiers.max()) + 1):
            slices += _tier_slice(f"{TIER_PREFIX}{t}", m, y[tiers == t], ids[tiers == t])
        experts.append(Component(expert_name(k), slices))
    named = list(class_order or [])
    unnamed = [c for c in order if c not in named]
    slices = (_class_slices(unnamed, y[core], ids[core], len(unnamed) or 1)
              + _class_slices(named, y[core], ids[core], classes_per_slice))
    alone = [c for m in members if len(m) == 1 for c in m]  # experts that are constant: the gate is all they have
    for t in range(1, int(tiers.max()) + 1):
        tier = (tiers == t) & np.isin(y, alone)
        slices += _tier_slice(f"{TIER_PREFIX}{t}", alone, y[tier], ids[tier])
    return Plan("class", experts + [Component(GATE, slices)])


def _tier_slice(slice_id: str, classes: list[int], y: np.ndarray, ids: np.ndarray) -> list[Slice]:
    """The slice of an expert's `classes` holding one owner tier's images, if it has any."""
    mine = np.isin(y, classes)
    members, present = ids[mine], sorted(int(c) for c in np.unique(y[mine]))
    return [Slice(slice_id, present, sorted(int(i) for i in members))] if len(members) else []


def _dealt(order: list[int], size: dict[int, int], shards: int) -> list[list[int]]:
    """Largest class first, each to the shard with the fewest samples so far."""
    load, members = [0] * shards, [[] for _ in range(shards)]
    for c in sorted(order, key=lambda c: -size[c]):
        lightest = load.index(min(load))
        members[lightest].append(c)
        load[lightest] += size[c]
    return members


def _similar_groups(x: np.ndarray, y: np.ndarray, order: list[int], size: dict[int, int],
                    shards: int) -> list[list[int]]:
    """Agglomerative grouping by mean-image distance, never past a balanced shard size.

    Repeatedly merges the two closest groups (average linkage) whose joint size stays
    within the cap, until `shards` groups remain; the cap is the larger of an even
    share and the largest class, raised to the smallest possible merge if none fits.
    """
    pixels = x.reshape(len(x), -1)
    centroids = {c: pixels[y == c].mean(axis=0, dtype=np.float64) for c in order}
    distance = {(a, b): float(np.linalg.norm(centroids[a] - centroids[b])) for a in order for b in order}
    groups = [[c] for c in order]
    cap = max(-(-sum(size.values()) // shards), max(size.values()))
    weight = lambda g: sum(size[c] for c in g)
    while len(groups) > shards:
        pairs = [(a, b) for a in range(len(groups)) for b in range(a + 1, len(groups))]
        fitting = [p for p in pairs if weight(groups[p[0]] + groups[p[1]]) <= cap]
        if not fitting:
            cap = min(weight(groups[a] + groups[b]) for a, b in pairs)
            continue
        a, b = min(fitting, key=lambda p: np.mean([distance[i, j] for i in groups[p[0]] for j in groups[p[1]]]))
        groups[a] = groups[a] + groups.pop(b)
    return groups


def random_plan(y: np.ndarray, ids: np.ndarray, shards: int, slices: int, seed: int) -> Plan:
    """Random shards and slices, as in the original SISA paper; no gate, experts are averaged."""
    _check_counts(shards=shards, slices=slices)
    if shards * slices > len(ids):
        raise InputError(f"shards={shards} x slices={slices} (--shards, --slices) is more than the {len(ids)} "
                         "training images; lower them.")
    order = np.random.default_rng(seed_for(seed, "plan")).permutation(len(ids))
    components = []
    for k, shard in enumerate(np.array_split(order, shards)):
        parts = np.array_split(shard, slices)
        components.append(Component(expert_name(k), [
            Slice(f"r{j}", sorted(int(c) for c in np.unique(y[p])), sorted(int(i) for i in ids[p]))
            for j, p in enumerate(parts)]))
    return Plan("random", components)


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"Expected {name} (--{name.replace('_', '-')}) to be a positive whole number, "
                             f"got {value!r}.")


def _order(present: list[int], class_order: list[int] | None) -> list[int]:
    """Unnamed classes first in label order, then the named ones in the order given."""
    named = list(class_order or [])
    unknown = [c for c in named if c not in present]
    if unknown or len(set(named)) != len(named):
        raise InputError(f"class_order (--class-order) must name distinct classes present in the data; "
                         f"got {named}, present {present}.")
    return [c for c in present if c not in named] + named


def _class_slices(classes: list[int], y: np.ndarray, ids: np.ndarray, per_slice: int) -> list[Slice]:
    slices = []
    for start in range(0, len(classes), per_slice):
        group = classes[start:start + per_slice]
        members = ids[np.isin(y, group)]
        if len(members):  # a class whose images all sit in owner tiers has no core slice
            present = [c for c in group if np.any(y == c)]
            slices.append(Slice("+".join(f"c{c}" for c in group), present, sorted(int(i) for i in members)))
    return slices
