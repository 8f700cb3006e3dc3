"""What a fit or a forget did to the model, measured when it happens, for receipts and reports.

A forget purges the deleted images before it retrains, so whatever is to be measured
on them (where the forgotten class's test images go, a membership-inference ROC) is
measured on a sample held in memory through the forget and never written: only the
resulting figures go into the receipt.
"""

from __future__ import annotations

import collections

import numpy as np

from keras_sisa import metrics
from keras_sisa.plan import Plan
from keras_sisa.run import TEST_DATA, Run
from keras_sisa.store import Store
from keras_sisa.tasks import load_samples

# Images per side of the membership-inference test: enough for a smooth ROC, cheap to predict.
MIA_IMAGES = 1000


def evaluation(run: Run) -> dict | None:
    """Accuracy of the current ensemble on the run's test data, or None without test data."""
    test = run.test_data()
    return None if test is None else _accuracy(run, run.predict(test["x"]), test["y"])


def hold(store: Store, plan: Plan, deleted: set[int], classes: list[int], seed: int) -> dict[str, np.ndarray]:
    """Copies, before the purge, what the audit needs: a sample of the deleted training images
    (members) and of test images of their classes (non-members), and the forgotten test images."""
    rng = np.random.default_rng(seed)
    samples = load_samples(store, plan)
    rows = np.flatnonzero(np.isin(samples.ids, list(deleted)))
    members = samples.x[np.sort(rng.permutation(rows)[:MIA_IMAGES])]
    held = {"members": members, "gone": members[:0]}
    if store.exists(TEST_DATA):
        test = store.read_arrays(TEST_DATA)
        same = np.flatnonzero(np.isin(test["y"], np.unique(samples.y[rows])))
        held["non_members"] = test["x"][np.sort(rng.permutation(same)[:MIA_IMAGES])]
        held["gone"] = test["x"][np.isin(test["y"], classes)]
    return held


def after_forget(run: Run, held: dict[str, np.ndarray]) -> dict:
    """Where the forgotten classes' test images are predicted now, the membership-inference
    ROC of the deleted images against unseen ones, and the accuracy on what is retained."""
    test = run.test_data()
    parts = dict(held, test=test["x"] if test is not None else held["members"][:0])
    # One prediction over everything: each differently sized call would trace the model again.
    predicted = np.split(run.predict(np.concatenate(list(parts.values()))),
                         np.cumsum([len(v) for v in parts.values()])[:-1])
    p = dict(zip(parts, predicted))
    names = np.asarray(run.class_names)[run.classes]
    result = {"evaluation": _accuracy(run, p["test"], test["y"]) if test is not None else None,
              "forgotten_predicted_as": {}, "mia": None}
    if len(p["gone"]):
        went = collections.Counter(names[np.argmax(p["gone"], axis=1)].tolist())
        result["forgotten_predicted_as"] = dict(went.most_common())
    if len(p["members"]) and len(p.get("non_members", ())):
        members, unseen = metrics.membership_scores(p["members"]), metrics.membership_scores(p["non_members"])
        result["mia"] = {"members": len(p["members"]), "non_members": len(p["non_members"]),
                         **{score: metrics.roc_curve(members[score], unseen[score]) for score in members}}
    return result


def _accuracy(run: Run, probabilities: np.ndarray, y: np.ndarray) -> dict:
    return metrics.accuracy_report(probabilities, y, run.classes, run.class_names)


def with_routing(run: Run, report: dict, images: np.ndarray, y: np.ndarray) -> dict:
    """`report` with the gate's routing accuracy on `images` added (runs with a gate only)."""
    gate = run.plan.gate
    if gate is None:
        return report
    state = run.component_state(gate.name)
    routed = state.build(run.gate_fn, run.input_shape).predict(images.astype(np.float32), batch_size=256, verbose=0)
    shard_of_class = {c: e.shard for e in run.plan.experts for s in e.slices for c in s.classes}
    return {**report, "routing_accuracy": metrics.routing_accuracy(routed, y, state.outputs, shard_of_class)}
