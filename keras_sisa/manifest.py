"""`Manifest`: what a run's manifest.json records, typed, and the `Status` of a run."""

from __future__ import annotations

import dataclasses
import enum

from keras_sisa.config import TrainingConfig
from keras_sisa.errors import InputError

FORMAT = "keras-sisa-run/1"
ALWAYS_WRITTEN = ("format", "status", "created", "class_names", "input_shape", "forgotten", "options", "config",
                  "model_fn", "gate_fn", "versions")


class Status(str, enum.Enum):
    """Where a run is in its life, as its manifest records it; every command checks it."""

    PREPARING = "preparing"  # data and plan being written: a fit killed now starts over
    FITTING = "fitting"  # planned; components train, and a killed fit resumes
    FITTED = "fitted"  # every component trained: readers may use it
    FORGETTING = "forgetting"  # a forget is pending: the next forget finishes it

    __str__ = str.__str__
    __format__ = str.__format__


@dataclasses.dataclass
class Manifest:
    """A run's manifest: its label space, options and config, its status, what it has
    forgotten, and the checksums of its files.

    `to_json` and `from_json` are its file form; optional fields that are empty stay out
    of the file, so a run that never forgot anything has no forget fields. Each field is
    described where it is declared.
    """

    #: Every class name of the fitted data, indexed by class.
    class_names: list[str]
    #: The shape of one image.
    input_shape: tuple[int, ...]
    #: The plan options the run was made with (`SISAClassifier`'s arguments).
    options: dict
    #: The `TrainingConfig` every slice trains with.
    config: TrainingConfig
    #: The experts' builder as `module:function`, or None for an unnamed one.
    model_fn: str | None
    #: The same for the gate.
    gate_fn: str | None
    #: When the fit began (UTC, ISO 8601).
    created: str
    #: The Python, TensorFlow, Keras and NumPy versions of the fit.
    versions: dict
    #: The run layout's version.
    format: str = FORMAT
    #: Where the run is in its life.
    status: Status = Status.PREPARING
    #: Indices of the forgotten classes.
    forgotten: list[int] = dataclasses.field(default_factory=list)
    #: The salt of the owners' hashes; None for a run fitted without owners.
    owner_salt: str | None = None
    #: Sample ids of every forgotten training image.
    deleted_ids: list[int] = dataclasses.field(default_factory=list)
    #: Salted hashes of every forgotten owner.
    forgotten_owners: list[str] = dataclasses.field(default_factory=list)
    #: Ids of the forget receipts in `receipts/`.
    receipts: list[int] = dataclasses.field(default_factory=list)
    #: The forget being carried out, with all it needs to finish after a kill.
    pending_forget: dict | None = None
    #: Training seconds of each component's fit.
    component_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Their sum.
    fit_seconds: float | None = None
    #: The test evaluation right after the fit.
    fit_evaluation: dict | None = None
    #: The checksum of every other file of the run.
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Fields of this format that this version does not know, kept as they are.
    extra: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, state: dict, where: str) -> Manifest:
        """The manifest whose file form is `state`; a format other than `FORMAT` is refused
        in one line naming `where` (the run directory)."""
        if state.get("format") != FORMAT:
            raise InputError(f"{where} is a run of format {state.get('format')!r}, which this keras-sisa "
                             f"({FORMAT!r}) cannot read; open it with the keras-sisa that fitted it, or refit.")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        fields = {k: v for k, v in state.items() if k in known}
        fields.update(status=Status(fields["status"]), input_shape=tuple(fields["input_shape"]),
                      config=TrainingConfig.from_manifest(fields["config"]))
        return cls(**fields, extra={k: v for k, v in state.items() if k not in known})

    def to_json(self) -> dict:
        """The manifest's file form (JSON-ready; `Store.write_manifest` seals and writes it)."""
        state = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in ALWAYS_WRITTEN or (field.name != "extra" and value not in (None, [], {})):
                state[field.name] = value
        state.update(input_shape=list(self.input_shape), config=dataclasses.asdict(self.config))
        return {**state, **self.extra}
