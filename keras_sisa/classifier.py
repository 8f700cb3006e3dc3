"""`SISAClassifier`: the public API, a Keras-shaped object over one run directory."""

from __future__ import annotations

import dataclasses
import datetime
import platform

import keras
import numpy as np
import tensorflow as tf

from keras_sisa import audit as audits, checkpoints, models, owners as owner_ids, plan as plans, unlearning
from keras_sisa.config import TrainingConfig
from keras_sisa.data import Dataset, numbered_classes, validate
from keras_sisa.errors import InputError
from keras_sisa.export import export as export_files
from keras_sisa.locking import RunLock
from keras_sisa.manifest import Manifest, Status
from keras_sisa.metrics import accuracy_report
from keras_sisa.models import ComponentState, ModelFn
from keras_sisa.optional import require
from keras_sisa.parallel import Execution, train_components
from keras_sisa.run import TEST_DATA, Run
from keras_sisa.store import PLAN, Store, data_path
from keras_sisa.tasks import collect_seconds
from keras_sisa.training import machine_threads, process_threads

STRATEGIES = ("class", "random")
GROUPINGS = ("similar", "dealt")


class SISAClassifier:
    """An image classifier trained as a SISA ensemble, so that data can be forgotten exactly.

    Each shard's expert and the gate train slice by slice with replay, checkpointing
    after every slice into `directory`; the ensemble merges them as
    P(class) = P(shard) * P(class | shard).

    Example:

        sisa = keras_sisa.SISAClassifier("runs/fashion")
        sisa.fit(x_train, y_train, class_names=names, test_data=(x_test, y_test))
        probabilities = sisa.predict(x_test)
        print(sisa.evaluate(x_test, y_test)["accuracy"])
    """

    def __init__(self, directory: str, model_fn: ModelFn | str = models.default_cnn,
                 gate_fn: ModelFn | str = models.default_cnn, shards: int | None = None,
                 classes_per_slice: int = 1, class_order: list[int] | None = None,
                 strategy: str = "class", grouping: str = "similar", slices: int = 4,
                 owner_tiers: tuple[float, ...] | None = None, config: TrainingConfig | None = None,
                 **config_fields):
        """Describes the ensemble; nothing is read or written until `fit`.

        Args:
            directory: the run directory (created by `fit`; must be new or empty).
            model_fn: expert builder `(input_shape, num_outputs) -> keras.Model`.
            gate_fn: gate builder, same contract; it sees every class.
            shards: number of shard experts; None: one per class, so the gate alone tells
                the classes apart and is as accurate as `model_fn` trained alone.
            classes_per_slice: classes a component meets per slice.
            class_order: class indices to put last, in this order: the cheapest to forget.
            strategy: "class" (class-isolated shards and a gate) or "random" (original SISA,
                `slices` slices per shard).
            grouping: "similar" (look-alike classes share a shard) or "dealt" (by class size).
            owner_tiers: image shares of the smallest owners' slices; None: with owners, those of
                0.25, 0.1, 0.05 that hold at least 750 images (`owners.default_tiers`).
            config: a `TrainingConfig`, or its fields as keyword arguments (epochs, seed, ...).
        """
        if strategy not in STRATEGIES:
            raise InputError(f"Unknown strategy {strategy!r}; expected one of {STRATEGIES}.")
        if grouping not in GROUPINGS:
            raise InputError(f"Unknown grouping {grouping!r}; expected one of {GROUPINGS}.")
        self.store = Store(directory)
        self.model_fn = models.resolve(model_fn)
        self.gate_fn = models.resolve(gate_fn)
        if owner_tiers is not None:
            owner_tiers = list(owner_ids.check_tiers(owner_tiers))
        self.options = dict(shards=shards, classes_per_slice=classes_per_slice,
                            class_order=class_order, strategy=strategy, grouping=grouping,
                            slices=slices, owner_tiers=owner_tiers)
        self._config = config or TrainingConfig(**config_fields)
        self.run: Run | None = None  # the run's state (and its compiled models), once prepared or loaded

    @property
    def directory(self) -> str:
        return self.store.root

    @property
    def config(self) -> TrainingConfig:
        """The training config: the run's once it is prepared or loaded, before that the one given."""
        return self.run.config if self.run else self._config

    @property
    def manifest(self) -> dict | None:
        """The run's manifest in its file form, or None before the run exists."""
        return self.run.get_state() if self.run else None

    @property
    def plan(self) -> plans.Plan | None:
        return self.run.plan if self.run else None

    def fit(self, x, y, class_names: list[str] | None = None, test_data=None,
            sample_ids=None, plan: plans.Plan | None = None, verbose: int = 1, workers: int = 1,
            backend: str = "local", ray_address: str | None = None, callbacks=None,
            owners=None, test_owners=None) -> SISAClassifier:
        """Plans the shards and slices, then trains every component slice by slice.

        `test_data=(x_test, y_test)` is kept in the run for `evaluate` without arguments;
        `sample_ids` (default: positions 0..N-1) name the samples for a later forget;
        `owners` (one id per image, None for none) the people, for `forget(owners=...)`;
        `test_owners` those of the test images, which that forget then drops too.
        `plan` replaces the computed plan, e.g. another run's plan with data removed:
        that is the fit a forget must reproduce exactly. `workers` trains components in
        that many local processes; `backend="ray"` makes each one a Ray task (on the
        cluster at `ray_address`, or a local Ray runtime). The weights are the same.
        `callbacks` (Keras callbacks such as TensorBoard or CSVLogger) see every slice's
        fit, with `component` and `slice` in their epoch logs; `histories()` keeps each
        slice's losses and stopping point in any case.
        """
        execution = Execution(workers, backend, ray_address, callbacks=callbacks)
        self._check_importable(execution, self.config.threads or machine_threads())
        self.prepare(x, y, class_names, test_data, sample_ids, plan, owners, test_owners)
        return self.resume(verbose, execution=execution)

    def prepare(self, x, y, class_names: list[str] | None = None, test_data=None,
                sample_ids=None, plan: plans.Plan | None = None, owners=None,
                test_owners=None) -> SISAClassifier:
        """Checks the data, plans, and writes data and plan into the run, training nothing.

        The first step of a fit whose components train elsewhere, one per job
        (`resume(only=...)`, `keras-sisa fit --only`); `fit` is `prepare` then `resume`.
        """
        self._discard_unprepared()
        if self.store.status() == Status.FITTING:
            raise InputError(f"{self.directory} holds an interrupted fit; finish it with "
                             "`keras_sisa.load(directory).resume()` or the same `keras-sisa fit`.")
        self.store.check_new()
        names = class_names or numbered_classes(y)
        x_test, y_test = test_data if test_data is not None else (x[:1], np.asarray(y)[:1])
        data = validate(Dataset(x, y, x_test, y_test, names, sample_ids, owners=owners,
                                test_owners=test_owners if test_data is not None else None))
        salt = owner_ids.new_salt() if data.owners is not None else None
        owned = owner_ids.digests(salt, data.owners, data.ids) if salt else None
        plan = plan or self._plan(data)
        unknown = set(i for c in plan.components for i in c.sample_ids) - set(data.ids.tolist())
        if unknown:
            raise InputError(f"The plan names {len(unknown)} sample ids not in the data, e.g. "
                             f"{min(unknown)}; give the data the plan was made for.")
        self._check_builders(data.input_shape)
        if self._config.threads is None:
            self._config = dataclasses.replace(self._config, threads=machine_threads())
        self.store.create()
        with RunLock(self.directory, "fit"):
            self.store.check_new()
            # PREPARING until data, plan and manifest are all written: such a run is discarded.
            run = Run(self.store, self._new_manifest(data, salt), plan, self.model_fn, self.gate_fn)
            run.write_manifest()
            for expert in plan.experts:
                rows = _rows(data.ids, expert.sample_ids)
                arrays = {"x": data.x_train[rows], "y": data.y_train[rows], "ids": data.ids[rows]}
                self.store.write_arrays(data_path(expert.name), arrays | ({"owners": owned[rows]} if salt else {}))
            if test_data is not None:
                test = {"x": data.x_test, "y": data.y_test}
                if salt and data.test_owners is not None:
                    test["owners"] = np.asarray([owner_ids.digest(salt, o) if o is not None else ""
                                                 for o in data.test_owners], dtype="U32")
                self.store.write_arrays(TEST_DATA, test)
            self.store.write_json(PLAN, plan.to_json())
            run.manifest.status = Status.FITTING
            run.write_manifest()
            self.run = run
        return self

    def resume(self, verbose: int = 1, execution: Execution | None = None,
               only: str | None = None) -> SISAClassifier:
        """Finishes a prepared or interrupted fit from each component's last slice checkpoint.

        With `only` (a component name such as "expert-3" or "gate"), trains that one
        component and nothing else, without taking the run's lock, so that separate jobs
        can train separate components at once; a last `resume()` then finds every
        component done and marks the run fitted.
        """
        if only is not None:
            self._reload()
            if self.run.status == Status.FITTING:
                names = [c.name for c in self.plan.components]
                if only not in names:
                    raise InputError(f"The run has no component {only!r}; it has {', '.join(names)}.")
                # The job holds no lock; its task leaves its time in a file of its own for the last resume.
                train_components(self.directory, [only], Execution(), self.run.builder, verbose)
            return self
        with RunLock(self.directory, "fit"):
            self._reload()
            if self.run.status != Status.FITTING:
                raise InputError(f"{self.directory} has no interrupted fit to resume (it is "
                                 f"{self.run.status}).")
            self._train_remaining(verbose, execution or Execution())
        return self

    def _train_remaining(self, verbose: int, execution: Execution) -> None:
        """Trains every component from its first slice without a checkpoint, then commits."""
        run = self.run
        names = [c.name for c in run.plan.components
                 if checkpoints.resume_point(self.store, c) < len(c.slices)]
        trained = collect_seconds(self.store, train_components(self.directory, names, execution,
                                                               run.builder, verbose, run.compiled))
        seconds = run.manifest.component_seconds
        for name, spent in trained.items():
            seconds[name] = seconds.get(name, 0.0) + spent
        run.manifest.status, run.manifest.fit_seconds = Status.FITTED, sum(seconds.values())
        if run.manifest.fit_evaluation is None:  # a repair restores the same weights
            run.checkpoints_changed()
            run.manifest.fit_evaluation = audits.evaluation(run)
        run.commit()

    def _discard_unprepared(self) -> None:
        """Deletes a run whose fit was interrupted before its data and plan were written."""
        if self.store.status() == Status.PREPARING:
            tf.io.gfile.rmtree(self.store.root)

    def forget(self, classes=(), samples=(), verbose: int = 1, workers: int = 1,
               backend: str = "local", ray_address: str | None = None, audit: bool | None = None,
               callbacks=None, owners=()) -> dict:
        """Forgets whole classes (names or indices), single samples (ids) and every image of
        `owners` (ids as given to `fit`), exactly.

        Each component is rewound to the checkpoint before the first slice that held
        deleted data and retrained from there; the result is bit-identical to a fit
        without that data. A forgotten class leaves the label space. Returns the
        receipt, also written to the run's `receipts/` folder. Waits for any other
        command writing the run, then first finishes a forget that was interrupted.
        `workers`, `backend` and `ray_address` place the retraining as in `fit`. `audit`
        adds to the receipt where the forgotten test images go now, a membership-inference
        ROC and the retained accuracy (`keras-sisa report` plots them); it costs predictions
        of the test set, so by default (None) only class forgets are audited.
        `callbacks` see every retrained slice's fit, as in `fit`.
        """
        execution = Execution(workers, backend, ray_address, callbacks=callbacks)
        self._check_importable(execution, self.config.threads or process_threads())
        with RunLock(self.directory, "forget"):
            self._reload()
            self.run.require_fitted(forgetting_allowed=True)
            if self.run.manifest.pending_forget is not None:
                if verbose:
                    print(f"Finishing the interrupted forget {self.run.manifest.pending_forget['id']}.")
                finished = unlearning.complete_pending(self.run, verbose, execution)
                if not list(classes) and not list(samples) and not list(owners):
                    return finished
            audit = bool(list(classes)) if audit is None else audit
            return unlearning.forget(self.run, classes, samples, verbose, execution, audit, owners)

    def _reload(self) -> None:
        """Reads manifest and plan again: another command may have changed them."""
        if self.run is None:
            self.run = Run.open(self.store, self.model_fn, self.gate_fn)
        else:
            self.run.reload()

    def verify(self, verbose: int = 0) -> list[dict]:
        """Refits every component a forget touched from scratch and compares weights bit for bit."""
        self.run.wait_for_writer()
        self.run.require_fitted()
        return unlearning.verify(self.run, verbose=verbose)

    def receipts(self) -> list[dict]:
        return self.run.receipts()

    def export(self, directory: str, format: str = "both", quantize: str = "none", **options) -> dict:
        """Writes the ensemble as it stands now as a SavedModel and/or TFLite file, parity-checked.

        See `keras_sisa.export.export` for the files and the report it returns.
        """
        self.run.wait_for_writer()
        return export_files(self.run, directory, format=format, quantize=quantize, **options)

    def report(self, directory: str) -> dict:
        """Writes an HTML page of PNG plots (and report.json) on what the model knows and forgot.

        See `keras_sisa.report.report`; returns the figures' numbers.
        """
        self.run.wait_for_writer()
        require("matplotlib")
        from keras_sisa.report import report  # matplotlib loads only when a report is asked for

        return report(self.run, directory)

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """Probabilities over the label space (`self.classes`), from raw 0..255 images."""
        return self.to_keras().predict(self._images(x), batch_size=batch_size, verbose=0)

    def _images(self, x) -> np.ndarray:
        """`x` as a float32 batch of the run's input shape, or an `InputError` saying why not."""
        images = np.asarray(x, np.float32)
        if images.ndim == 3 and len(self.input_shape) == 3 and self.input_shape[-1] == 1:
            images = images[..., None]
        if images.shape[1:] != self.input_shape:
            raise InputError(f"Expected images of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {images.shape}.")
        return images

    def evaluate(self, x=None, y=None) -> dict:
        """Accuracy, overall and per class, on retained classes; default: the run's test set.

        With a gate, `routing_accuracy` is the share of those images it sends to the shard
        that holds their class, which bounds the ensemble's accuracy.
        """
        self.run.wait_for_writer()
        if x is None:
            test = self.run.test_data()
            if test is None:
                raise InputError(f"The run {self.directory} holds no test data; pass x and y.")
            x, y = test["x"], test["y"]
        return audits.with_routing(self.run, accuracy_report(self.predict(x), y, self.classes, self.class_names),
                                   self._images(x), y)

    def to_keras(self) -> keras.Model:
        """The ensemble as one Keras model: raw images in, probabilities over `classes` out."""
        self.run.wait_for_writer()
        self.run.require_fitted()
        return self.run.ensemble()

    def save(self, filepath: str) -> None:
        """Saves the ensemble as a `.keras` file that `keras.saving.load_model` reloads."""
        self.to_keras().save(filepath)

    @property
    def classes(self) -> list[int]:
        """The label space: original class indices the model outputs, in order."""
        return self.run.classes

    @property
    def class_names(self) -> list[str]:
        return self.run.class_names

    @property
    def input_shape(self) -> tuple:
        return self.run.input_shape

    def component_state(self, name: str) -> ComponentState:
        """The current (last-slice) state of one component."""
        return self.run.component_state(name)

    def histories(self) -> dict[str, dict[str, dict]]:
        """Per component and slice, how its last training went (epochs, best epoch, samples,
        seconds), from the checkpoints on disk."""
        return self.run.histories()

    def recipe(self, histories: dict | None = None) -> dict:
        """The recipe the run actually trained with: the config's settings, and per component
        and slice the rounds of training (epochs, or `check_steps` steps of a long epoch),
        the best round, their steps, the epochs they make, samples and seconds. `histories`
        saves rereading them when the caller has `histories()` already."""
        config = dataclasses.asdict(self.config)
        histories, slices = histories or self.histories(), {}
        for component in self.plan.components:
            slices[component.name] = [_slice_recipe(slice_id, h) for slice_id, h in histories[component.name].items()]
        return {"config": config, "slices": slices}

    def info(self) -> dict:
        """What the run holds: classes, shards, slices per component, checkpoints and sizes."""
        names, histories, manifest = self.class_names, self.histories(), self.run.manifest
        return {
            "directory": self.directory,
            "status": manifest.status,
            "strategy": self.plan.strategy,
            "classes": [names[c] for c in self.classes],
            "forgotten": [names[c] for c in manifest.forgotten],
            "input_shape": list(self.input_shape),
            "components": self.run.components_info(),
            "total_bytes": sum(self.store.size(f) for f in self.store.files()),
            "fit_seconds": manifest.fit_seconds,
            "expected_forget_seconds": unlearning.expected_forget_seconds(self.run, histories),
            "expected_owner_forget_seconds": unlearning.expected_owner_seconds(self.run, histories),
            "owner_tiers": manifest.options.get("owner_tiers") or [],
            "recipe": self.recipe(histories),
            "receipts": [{k: r[k] for k in ("id", "time", "classes", "deleted_count", "rewound")}
                         | {"owners": len(r.get("owners", [])), "seconds": r["seconds"]["total"],
                            "resumed": "resumed" in r} for r in self.receipts()],
            "pending_forget": {k: v for k, v in manifest.pending_forget.items() if k != "deleted"}
            if manifest.pending_forget is not None else None,
        }

    def _plan(self, data: Dataset) -> plans.Plan:
        """The plan for `data`; with owners or explicit owner tiers, the class strategy puts
        small owners' images in each expert's last slices."""
        o = self.options
        if o["owner_tiers"] is None:
            owned = data.owners is not None
            o["owner_tiers"] = list(owner_ids.default_tiers(len(data.y_train))) if owned else []
        if o["strategy"] == "random":
            return plans.random_plan(data.y_train, data.ids, o["shards"] or plans.RANDOM_SHARDS, o["slices"],
                                     self._config.seed)
        x = data.x_train if o["grouping"] == "similar" else None
        shards = o["shards"] or len(np.unique(data.y_train))
        tiers = None
        if o["owner_tiers"]:
            tiers = owner_ids.tiers_of(owner_ids.keys(data.owners, data.ids), data.y_train,
                                       tuple(o["owner_tiers"]), self._config.seed)
        return plans.class_plan(data.y_train, data.ids, shards, o["classes_per_slice"],
                                o["class_order"], x, tiers)

    def _check_builders(self, input_shape: tuple) -> None:
        """Builds each model once before anything is written, so a bad builder fails early."""
        for builder in (self.model_fn, self.gate_fn):
            models.check_builder(builder, input_shape)

    def _check_importable(self, execution: Execution, threads: int) -> None:
        """Refuses, before anything is written, builders that another process could not import."""
        if execution.leaves_process(threads) and None in (models.spec_of(self.model_fn),
                                                          models.spec_of(self.gate_fn)):
            raise InputError("Training in other processes (workers, Ray, or another thread count) "
                             "needs model builders they can import: define them at module level "
                             "and pass them as functions or as 'module:function'.")

    def _new_manifest(self, data: Dataset, owner_salt: str | None) -> Manifest:
        return Manifest(
            class_names=data.class_names, input_shape=tuple(data.input_shape), options=self.options,
            config=self._config, model_fn=models.spec_of(self.model_fn), gate_fn=models.spec_of(self.gate_fn),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            versions={"python": platform.python_version(), "tensorflow": tf.__version__,
                      "keras": keras.__version__, "numpy": np.__version__},
            owner_salt=owner_salt)

    def integrity_problems(self) -> dict[str, str]:
        """Files the manifest lists that are missing or whose checksum no longer matches, with why."""
        return self.run.integrity_problems()

    def repair(self, verbose: int = 1) -> list[str]:
        """Refits each component with a bad checkpoint from its last good slice; returns what was bad.

        Data, plan or receipt files cannot be rebuilt: their loss is an error.
        """
        with RunLock(self.directory, "repair"):
            self._reload()
            self.run.require_fitted()  # a pending forget or fit finishes first; repair mends a settled run
            problems = self.integrity_problems()
            for path, problem in problems.items():
                if not path.startswith("checkpoints/"):
                    raise InputError(f"{problem}; it cannot be rebuilt from the run. Refit from your data.")
                _, name, file = path.split("/")
                checkpoints.remove_from(self.store, self.plan.component(name), file[:-len(".npz")])
            if problems:
                self.run.manifest.status = Status.FITTING
                self.run.write_manifest()
                self._train_remaining(verbose, Execution())
        return list(problems.values())


def _slice_recipe(slice_id: str, history: dict) -> dict:
    """How one slice trained, from its checkpoint's history."""
    rounds = history.get("epochs", 0)
    per_round, per_epoch = history.get("steps_per_round"), history.get("steps_per_epoch")
    epochs = rounds * per_round / per_epoch if per_round and per_epoch else rounds
    return {"slice": slice_id, "rounds": rounds, "best_round": history.get("best_epoch"),
            "steps_per_round": per_round, "epochs": round(epochs, 2), "samples": history.get("samples"),
            "validation_samples": history.get("validation_samples"), "seconds": history.get("seconds")}


def _rows(ids: np.ndarray, wanted) -> np.ndarray:
    order = np.argsort(ids)
    return order[np.searchsorted(ids[order], np.asarray(wanted, np.int64))]


def load(directory: str, model_fn: ModelFn | str | None = None,
         gate_fn: ModelFn | str | None = None, check: bool = True) -> SISAClassifier:
    """Opens a fitted run. Builders default to the ones named in its manifest.

    With `check`, every file's checksum is compared with the manifest first, so a
    corrupted or missing file is named instead of silently used.
    """
    run = Run.open(Store(directory), model_fn, gate_fn)
    sisa = SISAClassifier(directory, run.model_fn, run.gate_fn, **run.manifest.options, config=run.config)
    sisa.run = run
    if check and run.status == Status.FITTED:
        problems = list(run.integrity_problems().values())
        if problems:
            raise InputError(f"{directory}: {problems[0]}"
                             f"{f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''}; run "
                             "`keras-sisa repair RUN` to refit the affected component from its last "
                             "good slice.")
    return sisa
