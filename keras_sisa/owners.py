"""Owners: the person each training image belongs to, kept in a run only as salted hashes.

A deletion request names a person, not sample ids. A run stores, beside every image, a
salted SHA-256 of its owner (the salt is the run's own), so `forget(owners=...)` can
find a person's images while no owner id is ever written in clear. An image without an
owner is its own owner.
"""

from __future__ import annotations

import csv
import hashlib
import os
import secrets
import unicodedata

import numpy as np

from keras_sisa.errors import InputError
from keras_sisa.seeds import seed_for

# The image shares of the slices that follow each component's core, smallest owners last.
DEFAULT_TIERS = (0.25, 0.1, 0.05)
# The fewest images a default tier holds: a smaller one trains too few steps in its fixed
# epochs to learn its images, and costs accuracy (docs/benchmarks.md, 2026-12-07, night).
MIN_TIER_IMAGES = 750
# The least share of each class that owner tiers leave in the core slices.
MIN_CORE_SHARE = 0.5


def normalize(owners, count: int, name: str = "owners") -> list[str | None]:
    """Owner ids as strings, one per training image; None marks an image without an owner."""
    values = np.asarray(owners, dtype=object).reshape(-1) if owners is not None else None
    if values is None or len(values) != count:
        raise InputError(f"Expected `{name}` to hold one owner per training image ({count}), got "
                         f"{0 if values is None else len(values)}.")
    result = []
    for k, value in enumerate(values):
        if value is None:
            result.append(None)
            continue
        if isinstance(value, (bytes, np.bytes_)):
            value = value.decode("utf-8", "replace")
        if isinstance(value, (float, np.floating)):
            if not np.isfinite(value):
                raise InputError(f"`{name}` entry {k} is {value!r}: owner ids must be names or numbers.")
            value = int(value) if float(value).is_integer() else value
        text = str(value).strip()
        if not text or any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text):
            raise InputError(f"`{name}` entry {k} is {value!r}: owner ids must be non-empty and on one line.")
        result.append(text)
    return result


def read_csv(path: str, paths: list[str]) -> list[str | None]:
    """Owners of the images at `paths` (relative, "/"-separated) from a CSV of rows
    `path,owner`; a first row `path,owner` is a header. Unlisted images have no owner."""
    index = {p: k for k, p in enumerate(paths)}
    result: list[str | None] = [None] * len(paths)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"Cannot read {path}: {error}; write it as UTF-8 rows of path,owner.") from None
    for number, row in enumerate(rows, 1):
        if number == 1 and [c.strip().lower() for c in row] == ["path", "owner"]:
            continue
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != 2 or not row[1].strip():
            raise InputError(f"{path} line {number}: expected `path,owner` with a non-empty owner, got {row!r}.")
        image = row[0].strip().replace(os.sep, "/")
        if image not in index:
            raise InputError(f"{path} line {number}: {image!r} is not an image of the folder; paths are "
                             "relative to it, like CLASS/FILE.png.")
        result[index[image]] = row[1].strip()
    return result


def new_salt() -> str:
    return secrets.token_hex(16)


def digest(salt: str, owner: str) -> str:
    """The salted hash a run keeps of an owner id."""
    return hashlib.sha256(f"{salt}\x00{owner}".encode()).hexdigest()[:32]


def keys(owners: list[str | None] | None, ids: np.ndarray) -> list[str]:
    """Per image, its owner id; an image without an owner (or with no owners given) is owned
    by its sample id, under a name no owner id can take."""
    owners = owners if owners is not None else [None] * len(ids)
    return [owner if owner is not None else f"\x00image {int(i)}" for owner, i in zip(owners, ids)]


def digests(salt: str, owners: list[str | None], ids: np.ndarray) -> np.ndarray:
    """Per image, its owner's salted hash (`keys`)."""
    return np.asarray([digest(salt, key) for key in keys(owners, ids)], dtype="U32")


def check_tiers(tiers) -> tuple[float, ...]:
    """`owner_tiers` as a tuple of shares in (0, 1) that leave the core some images."""
    tiers = tuple(float(t) for t in tiers)
    if any(not 0 < t < 1 for t in tiers) or sum(tiers) >= 1:
        raise InputError(f"Expected owner_tiers (--owner-tiers) to be shares above 0 that sum to below 1, "
                         f"got {tiers}.")
    return tiers


def default_tiers(count: int) -> tuple[float, ...]:
    """The DEFAULT_TIERS that hold at least MIN_TIER_IMAGES of `count` training images:
    all three from 15,000 images, none below 3,000."""
    return tuple(t for t in DEFAULT_TIERS if t * count >= MIN_TIER_IMAGES)


def tiers_of(owner_keys: list[str], labels: np.ndarray, tiers: tuple[float, ...], seed: int) -> np.ndarray:
    """Per image, the slice its owner's images go to: 0 for the core, k for the k-th tier.

    Owners are ranked by how many images they have, fewest first (ties by a seeded hash);
    the last tier takes the smallest owners up to its share of the images, the tier
    before it the next ones, and the core the rest, so the many small owners sit in the
    cheap last slices. An owner who would leave a class with less than MIN_CORE_SHARE of
    its images in the core stays in the core: the gate learns a class that shares an
    expert from the core alone, so it must hold most of it.
    """
    unique, inverse, counts = np.unique(np.asarray(owner_keys, dtype=str), return_inverse=True,
                                        return_counts=True)
    classes, label_index = np.unique(np.asarray(labels), return_inverse=True)
    per_class = np.zeros((len(unique), len(classes)), np.int64)
    np.add.at(per_class, (inverse, label_index), 1)
    room = np.floor((1 - MIN_CORE_SHARE) * np.bincount(label_index, minlength=len(classes)))
    order = sorted(range(len(unique)), key=lambda k: (counts[k], seed_for(seed, "owner", unique[k])))
    bounds = np.cumsum(tiers[::-1]) * len(owner_keys)
    tier, placed = np.zeros(len(unique), np.int64), 0
    for k in order:
        step = int(np.searchsorted(bounds, placed + counts[k], side="left"))
        if step == len(tiers):
            break
        if np.all(per_class[k] <= room):
            room -= per_class[k]
            placed += counts[k]
            tier[k] = len(tiers) - step
    return tier[inverse]
