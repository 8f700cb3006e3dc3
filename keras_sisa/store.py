"""The run directory: manifest, plan, per-shard data and per-slice checkpoints.

Layout (all plain files, JSON and NumPy npz, no pickle):

    RUN/manifest.json               config, classes, versions, checksums of every file, and
                                    a digest of the manifest itself (`seal`)
    RUN/plan.json                   the partition plan
    RUN/data/<expert>.npz           the training images a shard holds (x, y, ids)
    RUN/data/test.npz               held-out test images
    RUN/checkpoints/<component>/<slice>.npz   state after each slice ("init" = before any)
    RUN/timings/<component>.json    a `fit --only` job's training time, until the run is fitted

Every write goes to a temporary name and is renamed into place, so an interrupted
command never leaves a half-written file; paths go through `tf.io.gfile`.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import shutil
import tempfile
import uuid
from typing import Callable, TypeVar

import numpy as np
import tensorflow as tf

from keras_sisa.errors import InputError
from keras_sisa.manifest import Manifest, Status

MANIFEST = "manifest.json"
PLAN = "plan.json"
LOCK = ".lock"  # the writers' lock file (locking.py); with only unfinished writes beside it, nothing was written yet
PARTIAL = ".tmp-"  # marks a file being written; renamed into place when complete
T = TypeVar("T")


class Store:
    """Reads and writes one run directory atomically and keeps the checksum of every file."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        if not self.root or self.root.endswith(":"):
            raise InputError(f"{root!r} is not a directory for a run (it is the filesystem root or "
                             "empty); give a path such as runs/fashion.")

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def exists(self, relative: str) -> bool:
        return tf.io.gfile.exists(self.path(relative))

    @property
    def is_run(self) -> bool:
        return self.exists(MANIFEST)

    def read_manifest(self) -> Manifest:
        return Manifest.from_json(self.read_json(MANIFEST), self.root)

    def write_manifest(self, manifest: Manifest) -> None:
        self.write_json(MANIFEST, manifest.to_json())

    def status(self) -> Status | None:
        """The run's status from its manifest, or None when there is no run."""
        return Status(self.read_json(MANIFEST)["status"]) if self.is_run else None

    def create(self) -> None:
        """Makes the directory for a new run; refuses one that already holds anything."""
        self.check_new()
        if tf.io.gfile.exists(self.root):
            self.remove_partial_writes()
        tf.io.gfile.makedirs(self.root)

    def check_new(self) -> None:
        """Raises `InputError` unless the directory is absent or holds only what a fit killed
        before its first complete file leaves: the lock and unfinished writes."""
        if not tf.io.gfile.exists(self.root):
            return
        if not tf.io.gfile.isdir(self.root):
            raise InputError(f"The run directory (--out) {self.root} is a file; give a new directory for the run.")
        for directory, _, names in tf.io.gfile.walk(self.root):
            top = directory.rstrip("/") == self.root
            if any(PARTIAL not in name and not (top and name == LOCK) for name in names):
                raise InputError(f"The run directory (--out) {self.root} already exists and is not empty; choose a new "
                                 "directory or delete that one.")

    def write_bytes(self, relative: str, data: bytes) -> str:
        """Writes atomically (temporary file, fsync, rename); returns the SHA-256 of the data."""
        final = self.path(relative)
        tf.io.gfile.makedirs(os.path.dirname(final))
        temporary = f"{final}{PARTIAL}{uuid.uuid4().hex[:8]}"
        if "://" in final:
            with tf.io.gfile.GFile(temporary, "wb") as f:
                f.write(data)
            tf.io.gfile.rename(temporary, final, overwrite=True)
        else:
            with open(temporary, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, final)
        return hashlib.sha256(data).hexdigest()

    def read_bytes(self, relative: str) -> bytes:
        with tf.io.gfile.GFile(self.path(relative), "rb") as f:
            return f.read()

    def write_json(self, relative: str, value) -> str:
        return self.write_bytes(relative, dumps(seal(value) if relative == MANIFEST else value).encode())

    def read_json(self, relative: str):
        """The JSON file `relative`; a missing or unreadable one is named in an `InputError`."""
        try:
            value = json.loads(self.read_bytes(relative))
        except tf.errors.NotFoundError:
            raise InputError(f"{self.path(relative)} is missing; the run is incomplete. Finish or redo "
                             "the command that made it.") from None
        except ValueError as error:
            raise InputError(f"{self.path(relative)} is corrupted ({type(error).__name__}); restore "
                             "it from a backup.") from None
        return unsealed(value, self.path(relative)) if relative == MANIFEST and isinstance(value, dict) else value

    def write_arrays(self, relative: str, arrays: dict[str, np.ndarray]) -> str:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return self.write_bytes(relative, buffer.getvalue())

    def read_arrays(self, relative: str, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """The arrays of an npz file: those named in `keys` that it holds, or all of them.
        Members not asked for are not decompressed."""
        try:
            with np.load(io.BytesIO(self.read_bytes(relative)), allow_pickle=False) as f:
                return {key: f[key] for key in keys or f.files if key in f.files}
        except ValueError as error:  # object arrays (pickles) are refused before any code runs
            raise InputError(f"{self.path(relative)} is not a plain npz of arrays ({error}); the run is "
                             "damaged. Run `keras-sisa repair RUN`, or refit.") from None

    def checksum(self, relative: str) -> str:
        """SHA-256 of a stored file, as `write_bytes` returns it and the manifest lists it."""
        return hashlib.sha256(self.read_bytes(relative)).hexdigest()

    def size(self, relative: str) -> int:
        return tf.io.gfile.stat(self.path(relative)).length

    def remove_partial_writes(self) -> None:
        """Deletes temporary files left by a writer that was killed before its rename."""
        for path in self.files(partial=True):
            if PARTIAL in path:
                tf.io.gfile.remove(self.path(path))

    def files(self, partial: bool = False) -> list[str]:
        """Every file of the run, relative to its root, in sorted order: not the dot-named lock,
        and not unfinished writes unless `partial`."""
        found = []
        for directory, _, names in tf.io.gfile.walk(self.root):
            prefix = directory[len(self.root):].strip("/")
            found += [f"{prefix}/{n}" if prefix else n for n in names
                      if not n.startswith(".") and (partial or PARTIAL not in n)]
        return sorted(found)


def build_directory(directory: str, build: Callable[[str], T]) -> T:
    """Runs `build(scratch)` in a scratch folder beside `directory`, then renames it into place,
    so a failed build leaves nothing behind. `directory` must be new or empty."""
    Store(directory).check_new()
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    prefix = f".partial-{os.path.basename(os.path.abspath(directory))}-"
    for stale in os.listdir(parent):  # scratch folders of killed builds of this directory
        pid = stale[len(prefix):].split("-")[0]
        if stale.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
    scratch = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    try:
        result = build(scratch)
        if os.path.isdir(directory):
            os.rmdir(directory)
        os.replace(scratch, directory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def timing_path(component: str) -> str:
    """Where a `fit --only` job leaves its component's training time until the run is committed."""
    return f"timings/{component}.json"


def data_path(component: str) -> str:
    return f"data/{component}.npz"


DIGEST = "digest"
KEY_VARIABLE = "KERAS_SISA_KEY"


def digest(text: str) -> str:
    """SHA-256 of `text`, or its HMAC-SHA256 under the key in $KERAS_SISA_KEY when set."""
    key = os.environ.get(KEY_VARIABLE)
    if key:
        return "hmac-sha256:" + hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def seal(manifest: dict) -> dict:
    """The manifest with a digest of the rest of it, so that an edit by hand is detected.

    Without a key this catches edits, not an attacker who recomputes the digest; with
    $KERAS_SISA_KEY set, only a holder of the key can write a manifest that passes."""
    body = {k: v for k, v in manifest.items() if k != DIGEST}
    return {**body, DIGEST: digest(dumps(body))}


def unsealed(manifest: dict, path: str) -> dict:
    """The manifest without its digest, once the digest matches (runs from before digests
    have none, and pass unless a key is set)."""
    stored = manifest.pop(DIGEST, None)
    keyed = bool(os.environ.get(KEY_VARIABLE))
    if stored is None and not keyed:
        return manifest
    if stored is None or (stored.startswith("hmac") != keyed):
        raise InputError(f"{path} is {'not ' if keyed else ''}sealed with a key, but {KEY_VARIABLE} is "
                         f"{'set' if keyed else 'not set'}; set it as when the run was written.")
    if not hmac.compare_digest(stored, digest(dumps(manifest))):
        raise InputError(f"{path} does not match its digest: it was edited outside keras-sisa. Restore it "
                         "from a backup, or refit the run.")
    return manifest


def dumps(value, indent: str = "") -> str:
    """Indented JSON with lists of numbers kept on one line, so large plans stay readable.

    Written out by hand because indenting with `json` and then joining the lines of
    numbers took 0.15 s for a Fashion-MNIST plan, on every forget (measured)."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = (f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {dumps(v, inner)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, (list, tuple)) and not all(_is_number(v) for v in value):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
