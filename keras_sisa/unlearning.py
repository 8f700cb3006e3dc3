"""Forgetting by rewind, and the proof that a forget equals a fresh fit.

A forget purges the deleted samples from the store, then for each component
restores the checkpoint from just before the first slice that held any of them
and retrains its later slices on what is left (DESIGN invariant 5). Components
that never held deleted data are not touched.
"""

from __future__ import annotations

import datetime
import hashlib
import tempfile
import time

import numpy as np
import tensorflow as tf

from keras_sisa.callbacks import INITIAL, read_state
from keras_sisa.data import class_indices
from keras_sisa.errors import InputError
from keras_sisa.plan import Plan
from keras_sisa.store import PLAN, Store, checkpoint_path, data_path
from keras_sisa.training import Samples, train_component


def first_touched(plan: Plan, deleted: set[int]) -> dict[str, int]:
    """For each component holding deleted samples, the index of its first slice that does."""
    touched = {}
    for component in plan.components:
        for k, s in enumerate(component.slices):
            if deleted.intersection(s.sample_ids):
                touched[component.name] = k
                break
    return touched


def load_samples(store: Store, plan: Plan) -> Samples:
    """The training images the run still holds, from its per-shard data files."""
    parts = [store.read_arrays(data_path(e.name)) for e in plan.experts]
    return Samples(np.concatenate([p["x"] for p in parts]), np.concatenate([p["y"] for p in parts]),
                   np.concatenate([p["ids"] for p in parts]))


def forget(sisa, classes=(), samples=(), verbose: int = 1) -> dict:
    """Removes `classes` (names or indices) and `samples` (ids) from a fitted run; returns the receipt."""
    names = sisa.class_names
    requested = class_indices(classes, names)
    already = sorted(set(requested) & set(sisa.manifest["forgotten"]))
    new_classes = sorted(set(requested) - set(already))
    if new_classes and set(sisa.classes) <= set(new_classes):
        raise InputError("Cannot forget every class: the model would have no outputs. Delete the "
                         "run directory instead.")
    plan = sisa.plan
    held = {i for c in plan.experts for i in c.sample_ids}
    ids = {int(i) for i in samples}
    unknown = sorted(ids - held - set(sisa.manifest.get("deleted_ids", [])))
    if unknown:
        raise InputError(f"Unknown sample id {unknown[0]} ({len(unknown)} unknown in all); sample ids "
                         "are the training images' positions in the source data.")
    samples = load_samples(sisa.store, plan)
    deleted = (ids & held) | set(samples.ids[np.isin(samples.y, new_classes)].tolist())
    if not deleted:
        what = ", ".join(names[c] for c in already) or "those samples"
        return {"noop": True, "message": f"Nothing to forget: {what} already forgotten."}

    started = time.perf_counter()
    before = {c.name: read_state(sisa.store, c.name, c.slices[-1].id).digest() for c in plan.components}
    touched = first_touched(plan, deleted)
    new_plan = plan.without(deleted, new_classes)
    receipt = {
        "id": len(sisa.manifest.get("receipts", [])) + 1,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "classes": [names[c] for c in new_classes],
        "class_indices": new_classes,
        "sample_ids": sorted(ids & held),
        "deleted_count": len(deleted),
        "deleted_ids_sha256": hashlib.sha256(np.asarray(sorted(deleted), np.int64).tobytes()).hexdigest(),
        "rewound": {name: {"to_slice": plan.component(name).slices[k - 1].id if k else INITIAL,
                           "retrained_slices": _retrained(new_plan, name, k)}
                    for name, k in touched.items()},
        "removed_components": [c.name for c in plan.components
                               if c.name not in {n.name for n in new_plan.components}],
        "checksums_before": before,
    }
    _purge(sisa, plan, new_plan, deleted, new_classes, touched, receipt)
    purge_seconds = time.perf_counter() - started

    kept = ~np.isin(samples.ids, sorted(deleted))
    samples = Samples(samples.x[kept], samples.y[kept], samples.ids[kept])
    seconds = {}
    for name, k in touched.items():
        if name in receipt["removed_components"] or k >= len(new_plan.component(name).slices):
            continue
        began = time.perf_counter()
        train_component(sisa.store, new_plan, name, sisa._builder(new_plan.component(name)),
                        sisa.input_shape, samples, sisa.config, start=k, verbose=verbose)
        seconds[name] = time.perf_counter() - began
    sisa.plan, sisa._model = new_plan, None
    receipt.update(
        checksums_after={c.name: sisa.component_state(c.name).digest() for c in new_plan.components},
        seconds={"purge": purge_seconds, "retrain": seconds, "total": time.perf_counter() - started})
    sisa.store.write_json(f"receipts/{receipt['id']:04d}.json", receipt)
    sisa.manifest["receipts"] = sisa.manifest.get("receipts", []) + [receipt["id"]]
    sisa.manifest["status"] = "fitted"
    sisa.manifest.pop("pending_forget", None)
    sisa._commit()
    return receipt


def _retrained(plan: Plan, name: str, start: int) -> int:
    names = {c.name for c in plan.components}
    return len(plan.component(name).slices) - start if name in names else 0


def _purge(sisa, plan: Plan, new_plan: Plan, deleted: set[int], classes: list[int],
           touched: dict[str, int], receipt: dict) -> None:
    """Removes the deleted samples from every stored file before any retraining starts.

    The manifest first records the pending forget, so an interrupted one is visible
    and the data files never again hold what it deleted.
    """
    store = sisa.store
    sisa.manifest.update(status="forgetting", pending_forget=receipt,
                         forgotten=sorted(set(sisa.manifest["forgotten"]) | set(classes)),
                         deleted_ids=sorted(set(sisa.manifest.get("deleted_ids", [])) | deleted))
    store.write_json("manifest.json", sisa.manifest)
    remaining = {c.name for c in new_plan.experts}
    for expert in plan.experts:
        if expert.name not in touched:
            continue
        if expert.name in remaining:
            arrays = store.read_arrays(data_path(expert.name))
            keep = ~np.isin(arrays["ids"], list(deleted))
            store.write_arrays(data_path(expert.name), {k: v[keep] for k, v in arrays.items()})
        else:
            tf.io.gfile.remove(store.path(data_path(expert.name)))
    if classes and store.exists("data/test.npz"):
        test = store.read_arrays("data/test.npz")
        keep = ~np.isin(test["y"], classes)
        store.write_arrays("data/test.npz", {k: v[keep] for k, v in test.items()})
    store.write_json(PLAN, new_plan.to_json())
    for name, k in touched.items():
        component = plan.component(name)
        stale = component.slices[k:] if name in {c.name for c in new_plan.components} else component.slices
        for s in stale:
            if store.exists(checkpoint_path(name, s.id)):
                tf.io.gfile.remove(store.path(checkpoint_path(name, s.id)))
        if name not in {c.name for c in new_plan.components}:
            tf.io.gfile.remove(store.path(checkpoint_path(name, INITIAL)))


def verify(sisa, verbose: int = 0) -> list[dict]:
    """Refits from scratch every component a forget touched, on the current plan and data,
    and compares its weights bit for bit with the stored ones."""
    receipts = sisa.receipts()
    names = {c.name for c in sisa.plan.components}
    touched = sorted({n for r in receipts for n in r["rewound"]} & names)
    samples = load_samples(sisa.store, sisa.plan)
    rows = []
    with tempfile.TemporaryDirectory(prefix="keras-sisa-verify-") as scratch:
        fresh = Store(scratch)
        for name in touched:
            component = sisa.plan.component(name)
            began = time.perf_counter()
            state = train_component(fresh, sisa.plan, name, sisa._builder(component), sisa.input_shape,
                                    samples, sisa.config, verbose=verbose)
            stored = sisa.component_state(name).digest()
            rows.append({"component": name, "stored": stored, "refit": state.digest(),
                         "identical": stored == state.digest(), "seconds": time.perf_counter() - began})
    return rows
