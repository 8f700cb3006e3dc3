"""Forgetting by rewind, and the proof that a forget equals a fresh fit.

A forget purges the deleted samples from the store, then for each component
restores the checkpoint from just before the first slice that held any of them
and retrains its later slices on what is left (docs/design.md, invariant 5). Components
that never held deleted data are not touched.
"""

from __future__ import annotations

import datetime
import hashlib
import tempfile
import time

import numpy as np
import tensorflow as tf

from keras_sisa import audit as audits, costs, owners as owner_ids
from keras_sisa.checkpoints import INITIAL, keep_only
from keras_sisa.data import class_indices
from keras_sisa.errors import InputError
from keras_sisa.manifest import Status
from keras_sisa.parallel import Execution, train_components
from keras_sisa.plan import Plan
from keras_sisa.run import TEST_DATA, Run
from keras_sisa.store import PLAN, Store, data_path
from keras_sisa.tasks import collect_seconds, load_labels, load_owners, load_samples
from keras_sisa.training import process_threads, train_component


def first_touched(plan: Plan, deleted: set[int]) -> dict[str, int]:
    """For each component holding deleted samples, the index of its first slice that does."""
    touched = {}
    for component in plan.components:
        for k, s in enumerate(component.slices):
            if deleted.intersection(s.sample_ids):
                touched[component.name] = k
                break
    return touched


def rewinds(plan: Plan, deleted: set[int], classes=()) -> dict[str, dict]:
    """For each component a deletion touches: the checkpoint it rewinds to, and how many of
    its slices (`of_slices` before) are retrained after it."""
    new_plan = plan.without(deleted, classes)
    remaining = {c.name for c in new_plan.components}
    return {name: {"to_slice": plan.component(name).slices[k - 1].id if k else INITIAL,
                   "retrained_slices": len(new_plan.component(name).slices) - k if name in remaining else 0,
                   "of_slices": len(plan.component(name).slices)}
            for name, k in first_touched(plan, deleted).items()}


def _slice_prices(run: Run, histories: dict | None) -> dict[str, dict[str, float]]:
    """What each slice of the run cost to train (`costs.slice_seconds`)."""
    return costs.slice_seconds(run.plan, histories or run.histories(), run.config,
                               run.manifest.component_seconds)


def expected_forget_seconds(run: Run, histories: dict | None = None) -> dict[str, float]:
    """Per retained class, the training seconds a forget of it should take (`costs`);
    `histories` as `run.histories()` returns them, if the caller has them."""
    labels, ids = load_labels(run.store, run.plan)
    prices = _slice_prices(run, histories)
    return {run.class_names[c]: costs.retraining_seconds(run.plan, set(ids[labels == c].tolist()), [c], prices)
            for c in run.classes}


def owner_images(run: Run, owners) -> tuple[set[int], list[dict]]:
    """The sample ids of the images of `owners` (ids as given at fit) that the run still holds,
    and per owner its salted hash and image count. An owner the run never held is refused."""
    owners = list(owners)
    if not owners:
        return set(), []
    salt = run.manifest.owner_salt
    if salt is None:
        raise InputError("The run was fitted without owners; pass owners to fit (an `owners` array in "
                         "--npz, owners.csv in --data-dir) to forget people.")
    stored, ids = load_owners(run.store, run.plan)
    forgotten = set(run.manifest.forgotten_owners)
    found, rows = set(), []
    for owner in owner_ids.normalize(owners, len(owners), "owners"):
        key = owner_ids.digest(salt, owner)
        held = ids[stored == key]
        if not len(held) and key not in forgotten:
            shown = owner if len(owner) <= 40 else owner[:40] + "..."
            raise InputError(f"Unknown owner {shown!r}: no training image of the run belongs to it.")
        found |= set(held.tolist())
        rows.append({"owner_sha256": key, "images": len(held)})
    return found, rows


def expected_owner_seconds(run: Run, histories: dict | None = None) -> dict | None:
    """The training seconds forgetting one owner should take: mean, median, 90th percentile
    and most over the run's owners (`costs.owner_seconds`); None for a run fitted without owners."""
    if run.manifest.owner_salt is None:
        return None
    owners, ids = load_owners(run.store, run.plan)
    seconds = costs.owner_seconds(run.plan, owners, ids, _slice_prices(run, histories))
    return {"owners": len(seconds), "median": float(np.median(seconds)), "p90": float(np.percentile(seconds, 90)),
            "mean": float(np.mean(seconds)), "max": float(np.max(seconds))}


def forget(run: Run, classes=(), samples=(), verbose: int = 1, execution: Execution = Execution(),
           audit: bool = True, owners=()) -> dict:
    """Removes `classes` (names or indices), `samples` (ids) and the images of `owners` from a
    fitted run; returns the receipt.

    The request is first recorded in the manifest as pending, with everything needed
    to finish it; `complete_pending` then purges and retrains. A forget killed at any
    point is finished by the next `forget` on the run, never undone. With `audit`, the
    receipt also records what the forget did to the model (`audit.after_forget`).
    """
    names = run.class_names
    requested = class_indices(classes, names)
    already = sorted(set(requested) & set(run.manifest.forgotten))
    new_classes = sorted(set(requested) - set(already))
    if new_classes and set(run.classes) <= set(new_classes):
        raise InputError("Cannot forget every class: the model would have no outputs. Delete the "
                         "run directory instead.")
    plan = run.plan
    held = {i for c in plan.experts for i in c.sample_ids}
    ids = {int(i) for i in samples}
    unknown = sorted(ids - held - set(run.manifest.deleted_ids))
    if unknown:
        raise InputError(f"Unknown sample id {unknown[0]} ({len(unknown)} unknown in all); sample ids "
                         "are the training images' positions in the source data.")
    owned, owner_rows = owner_images(run, owners)
    of_classes = set()
    if new_classes:  # the shards' labels are read only when they are needed
        labels, stored_ids = load_labels(run.store, plan)
        of_classes = set(stored_ids[np.isin(labels, new_classes)].tolist())
    deleted = (ids & held) | owned | of_classes
    if not deleted:
        what = ", ".join(names[c] for c in already) or ("those owners" if owner_rows else "those samples")
        return {"noop": True, "message": f"Nothing to forget: {what} already forgotten."}

    new_plan = plan.without(deleted, new_classes)
    remaining = {c.name for c in new_plan.components}
    pending = {
        "id": len(run.manifest.receipts) + 1,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "classes": [names[c] for c in new_classes],
        "class_indices": new_classes,
        "sample_ids": sorted(ids & held),
        "owners": owner_rows,
        "deleted_count": len(deleted),
        "deleted_ids_sha256": hashlib.sha256(np.asarray(sorted(deleted), np.int64).tobytes()).hexdigest(),
        "rewound": rewinds(plan, deleted, new_classes),
        "removed_components": sorted(c.name for c in plan.components if c.name not in remaining),
        "checksums_before": {c.name: run.component_state(c.name).digest() for c in plan.components},
        "deleted": sorted(deleted),
        "purged": False,
        "audit": audit,
    }
    manifest = run.manifest
    manifest.status, manifest.pending_forget = Status.FORGETTING, pending
    manifest.forgotten = sorted(set(manifest.forgotten) | set(new_classes))
    manifest.deleted_ids = sorted(set(manifest.deleted_ids) | deleted)
    manifest.forgotten_owners = sorted(set(manifest.forgotten_owners)
                                       | {r["owner_sha256"] for r in owner_rows})
    run.write_manifest()
    return complete_pending(run, verbose, execution)


def complete_pending(run: Run, verbose: int = 1, execution: Execution = Execution()) -> dict:
    """Finishes the forget recorded in the manifest: purge, rewind, retrain, receipt.

    Every step can run again after an interruption: the purge removes what is still
    there, and retraining starts at the first slice without a fresh checkpoint.
    """
    pending = run.manifest.pending_forget
    started = time.perf_counter()
    resumed = pending["purged"]  # an earlier attempt purged the images, so no audit can see them
    deleted = set(pending["deleted"])
    plan = run.plan.without(deleted, pending["class_indices"])
    held = None
    if not pending["purged"]:
        if pending["audit"]:
            held = audits.hold(run.store, run.plan, deleted, pending["class_indices"], run.config.seed)
        _purge(run.store, plan, deleted, pending)
        pending["purged"] = True
        run.write_manifest()
    run.replan(plan)
    purge_seconds = time.perf_counter() - started

    retrained = [name for name in pending["rewound"] if name not in pending["removed_components"]]
    seconds = collect_seconds(run.store, train_components(run.directory, retrained, execution,
                                                           run.builder, verbose, run.compiled))
    total = time.perf_counter() - started
    receipt = {k: v for k, v in pending.items() if k not in ("deleted", "purged", "audit")}
    receipt.update(
        checksums_after={c.name: run.component_state(c.name).digest() for c in plan.components},
        seconds={"purge": purge_seconds, "retrain": seconds, "total": total})
    if resumed:
        receipt["resumed"] = ("finished after an interruption: total counts this attempt only, retrain "
                              "holds each component's recorded time")
        if pending["audit"]:
            receipt["audit_unavailable"] = "the images were purged before the interruption"
    if held is not None:
        receipt["audit"] = audits.after_forget(run, held)
        receipt["seconds"]["audit"] = time.perf_counter() - started - total
    run.store.write_json(f"receipts/{receipt['id']:04d}.json", receipt)
    run.manifest.receipts = sorted(set(run.manifest.receipts) | {receipt["id"]})
    run.manifest.status, run.manifest.pending_forget = Status.FITTED, None
    run.commit()
    return receipt


def _purge(store: Store, new_plan: Plan, deleted: set[int], pending: dict) -> None:
    """Removes the deleted samples from every stored file that held any, and the checkpoints
    after each rewind point, before any retraining starts. Reads what is on disk, so it can
    run again."""
    remaining = {c.name for c in new_plan.components}
    for name in pending["rewound"]:  # the components that held deleted samples; the gate holds no file
        if not store.exists(data_path(name)):
            continue
        if name not in remaining:
            tf.io.gfile.remove(store.path(data_path(name)))
            continue
        arrays = store.read_arrays(data_path(name))
        keep = ~np.isin(arrays["ids"], list(deleted))
        if not keep.all():
            store.write_arrays(data_path(name), {k: v[keep] for k, v in arrays.items()})
    if (pending["class_indices"] or pending.get("owners")) and store.exists(TEST_DATA):
        test = store.read_arrays(TEST_DATA)
        keep = ~np.isin(test["y"], pending["class_indices"])
        if "owners" in test:
            keep &= ~np.isin(test["owners"], [r["owner_sha256"] for r in pending.get("owners", [])])
        if not keep.all():
            store.write_arrays(TEST_DATA, {k: v[keep] for k, v in test.items()})
    store.write_json(PLAN, new_plan.to_json())
    for name, rewind in pending["rewound"].items():
        keep = set()
        if name in remaining:
            slices = [INITIAL] + [s.id for s in new_plan.component(name).slices]
            keep = set(slices[:slices.index(rewind["to_slice"]) + 1])
        keep_only(store, name, keep)


def check_receipt_chain(receipts: list[dict], current: dict[str, str]) -> None:
    """Each receipt must start from the weights the one before it left, and the last must
    have left the weights the run holds now; otherwise the run changed outside keras-sisa."""
    states = [(f"receipt {r['id']}", r.get("checksums_before", {}), r.get("checksums_after", {})) for r in receipts]
    for (earlier, _, left), (later, found, _) in zip(states, states[1:]):
        changed = sorted(n for n in set(left) & set(found) if left[n] != found[n])
        if changed:
            raise InputError(f"{later} starts from other weights of {changed[0]} than {earlier} left; the "
                             "run was changed outside keras-sisa. Refit it from your data.")
    if states:
        changed = sorted(n for n in set(states[-1][2]) & set(current) if states[-1][2][n] != current[n])
        if changed:
            raise InputError(f"The weights of {changed[0]} differ from what {states[-1][0]} left; the run was "
                             "changed outside keras-sisa. Refit it from your data.")


def verify(run: Run, verbose: int = 0) -> list[dict]:
    """Refits from scratch every component a forget touched, on the current plan and data,
    and compares its weights bit for bit with the stored ones."""
    threads = run.config.threads
    if threads and threads != process_threads():
        raise InputError(f"The run trains with {threads} TensorFlow threads but this process has "
                         f"{process_threads()}, which would change the bits; set TF_NUM_INTRAOP_THREADS="
                         f"{threads} and TF_NUM_INTEROP_THREADS={threads} and verify again.")
    receipts = run.receipts()
    check_receipt_chain(receipts, {c.name: run.component_state(c.name).digest() for c in run.plan.components})
    names = {c.name for c in run.plan.components}
    touched = sorted({n for r in receipts for n in r["rewound"]} & names)
    samples = load_samples(run.store, run.plan)
    rows = []
    with tempfile.TemporaryDirectory(prefix="keras-sisa-verify-") as scratch:
        fresh = Store(scratch)
        for name in touched:
            component = run.plan.component(name)
            began = time.perf_counter()
            state = train_component(fresh, run.plan, name, run.builder(component), run.input_shape,
                                    samples, run.config, verbose=verbose)
            stored = run.component_state(name).digest()
            rows.append({"component": name, "stored": stored, "refit": state.digest(),
                         "identical": stored == state.digest(), "seconds": time.perf_counter() - began})
    return rows
