"""`Run`: one run directory's state as the library works on it."""

from __future__ import annotations

import keras
import numpy as np

from keras_sisa import models
from keras_sisa.checkpoints import checkpoint_path, read_history, read_state, saved_slices
from keras_sisa.ensemble import build_ensemble
from keras_sisa.config import TrainingConfig
from keras_sisa.errors import InputError
from keras_sisa.locking import wait_for_writer
from keras_sisa.manifest import Manifest, Status
from keras_sisa.models import ComponentState, ModelFn
from keras_sisa.plan import Component, Plan
from keras_sisa.store import MANIFEST, PLAN, Store
from keras_sisa.training import CompiledModels

TEST_DATA = "data/test.npz"


class Run:
    """A run's store, manifest, plan, model builders and training config, with the label
    space they define and the ensemble of its last checkpoints.

    Forget, verify, audit, report and export take a `Run`; `SISAClassifier` is the
    public face of one. As KerasTuner's `Stateful`, `get_state()` is what the manifest
    file holds and `Run.from_state` rebuilds a run from it, refusing a format this
    version cannot read.

    Args:
        store: the run directory.
        manifest: its `Manifest`.
        plan: its current plan.
        model_fn, gate_fn: the experts' and the gate's model builders.
        compiled: compiled models to reuse across this run's trainings.
    """

    def __init__(self, store: Store, manifest: Manifest, plan: Plan, model_fn: ModelFn, gate_fn: ModelFn,
                 compiled: CompiledModels | None = None):
        self.store = store
        self.manifest = manifest
        self.plan = plan
        self.model_fn = model_fn
        self.gate_fn = gate_fn
        self.compiled = compiled or CompiledModels()
        self._ensemble: keras.Model | None = None

    @classmethod
    def open(cls, store: Store, model_fn: ModelFn | str | None = None, gate_fn: ModelFn | str | None = None,
             compiled: CompiledModels | None = None) -> Run:
        """The run in `store`; builders default to those its manifest names."""
        if not store.is_run:
            raise InputError(f"{store.root} is not a keras-sisa run (no {MANIFEST}); give the --out "
                             "directory of a `keras-sisa fit`.")
        return cls.from_state(store, store.read_json(MANIFEST), model_fn, gate_fn, compiled)

    @classmethod
    def from_state(cls, store: Store, state: dict, model_fn: ModelFn | str | None = None,
                   gate_fn: ModelFn | str | None = None, compiled: CompiledModels | None = None) -> Run:
        """The run whose manifest is `state` (its file form), with the plan from its store."""
        manifest = Manifest.from_json(state, store.root)
        return cls(store, manifest, Plan.from_json(store.read_json(PLAN)),
                   named_builder(manifest, False, model_fn), named_builder(manifest, True, gate_fn), compiled)

    def get_state(self) -> dict:
        return self.manifest.to_json()

    def reload(self) -> None:
        """Reads manifest and plan again: another command may have changed them."""
        self.manifest = self.store.read_manifest()
        self.replan(Plan.from_json(self.store.read_json(PLAN)))

    def replan(self, plan: Plan) -> None:
        """Makes `plan` the run's plan; the ensemble is rebuilt on next use."""
        self.plan = plan
        self.checkpoints_changed()

    def checkpoints_changed(self) -> None:
        """Drops the ensemble built from the checkpoints, so that the next use reads them anew."""
        self._ensemble = None

    def write_manifest(self) -> None:
        self.store.write_manifest(self.manifest)

    def commit(self) -> None:
        """Records the checksum of every file and writes the manifest last."""
        self.manifest.files = {f: self.store.checksum(f) for f in self.store.files() if f != MANIFEST}
        self.write_manifest()

    @property
    def directory(self) -> str:
        return self.store.root

    @property
    def status(self) -> Status:
        return self.manifest.status

    @property
    def config(self) -> TrainingConfig:
        return self.manifest.config

    @property
    def classes(self) -> list[int]:
        """The label space: original class indices the model outputs, in order."""
        return sorted({c for e in self.plan.experts for s in e.slices for c in s.classes})

    @property
    def class_names(self) -> list[str]:
        return self.manifest.class_names

    @property
    def input_shape(self) -> tuple:
        return self.manifest.input_shape

    def builder(self, component: Component) -> ModelFn:
        return self.gate_fn if component.is_gate else self.model_fn

    def ensemble(self) -> keras.Model:
        """The ensemble of the components' last checkpoints, built once per change of the run."""
        if self._ensemble is None:
            states = {c.name: self.component_state(c.name) for c in self.plan.components}
            self._ensemble = build_ensemble(self.plan, states, self.model_fn, self.gate_fn,
                                            self.input_shape, self.classes)
        return self._ensemble

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The current ensemble's probabilities, whatever the status (an audit runs inside a forget)."""
        return self.ensemble().predict(images, batch_size=256, verbose=0)

    def component_state(self, name: str) -> ComponentState:
        """The current (last-slice) state of one component."""
        return read_state(self.store, name, self.plan.component(name).slices[-1].id)

    def histories(self) -> dict[str, dict[str, dict]]:
        """Per component and slice with a checkpoint, how its last training went."""
        return {c.name: {s: read_history(self.store, c.name, s) for s in saved_slices(self.store, c)}
                for c in self.plan.components}

    def components_info(self) -> list[dict]:
        """Per component: classes, samples, slices, and the checkpoints on disk with their size."""
        components = []
        for component in self.plan.components:
            # During or after an interrupted command some checkpoints may be gone: count what is there.
            files = [checkpoint_path(component.name, s) for s in saved_slices(self.store, component)]
            components.append({
                "name": component.name,
                "classes": [self.class_names[c] for c in sorted({c for s in component.slices for c in s.classes})],
                "samples": len(component.sample_ids),
                "slices": [s.id for s in component.slices],
                "checkpoints": len(files),
                "checkpoint_bytes": sum(self.store.size(f) for f in files),
            })
        return components

    def integrity_problems(self) -> dict[str, str]:
        """Files the manifest lists that are missing or whose checksum no longer matches, with why."""
        problems = {}
        for path, checksum in self.manifest.files.items():
            if not self.store.exists(path):
                problems[path] = f"{path} is missing"
            elif self.store.checksum(path) != checksum:
                problems[path] = f"{path} is corrupted (checksum mismatch)"
        return problems

    def receipts(self) -> list[dict]:
        return [self.store.read_json(f"receipts/{r:04d}.json") for r in self.manifest.receipts]

    def test_data(self) -> dict[str, np.ndarray] | None:
        """The run's held-out test images and labels, or None if it has none."""
        return self.store.read_arrays(TEST_DATA) if self.store.exists(TEST_DATA) else None

    def wait_for_writer(self) -> None:
        """A reader of a run that a live command is changing waits for it, then reads anew."""
        if self.status != Status.FITTED and wait_for_writer(self.directory):
            self.reload()

    def require_fitted(self, forgetting_allowed: bool = False) -> None:
        """Refuses, with what to run, a run whose fit or forget has not finished."""
        status = self.status
        if status == Status.FITTED or (forgetting_allowed and status == Status.FORGETTING):
            return
        if status == Status.FORGETTING:
            action = f"keras-sisa forget {self.directory}"
        else:
            action = f"keras-sisa fit --out {self.directory}"
        raise InputError(f"The run {self.directory} is {status}: a command was interrupted or is "
                         f"running. Run `{action}` to finish it first.")


def named_builder(manifest: Manifest, is_gate: bool, given: ModelFn | str | None = None) -> ModelFn:
    """`given`, or else the gate's or the experts' builder as the manifest names it (`module:function`)."""
    key = "gate_fn" if is_gate else "model_fn"
    spec = given or getattr(manifest, key)
    if spec is None:
        raise InputError(f"The run was fitted with an unnamed {key}; pass it to load(). To train in other "
                         "processes (workers, Ray), define it at module level.")
    return models.resolve(spec)
