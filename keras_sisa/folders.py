"""Class folders of images, read the way `keras.utils.image_dataset_from_directory` reads them.

Real photo collections mix sizes and colour modes and carry stray files. Like Keras,
every image is decoded to one colour mode and resized to one size; unlike Keras, the
defaults are the size and mode most images already have, and what was changed or
skipped is counted in one line for the user.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import stat

import numpy as np

from keras_sisa.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
COLOR_MODES = {"grayscale": 1, "rgb": 3}


@dataclasses.dataclass
class FolderImages:
    """Images of one folder tree: pixels, labels, paths relative to the tree ("CLASS/FILE"),
    and the one-line account of what was read."""

    x: np.ndarray
    y: np.ndarray
    image_size: tuple[int, int]
    color_mode: str
    note: str
    paths: list[str]


def class_folders(directory: str) -> list[str]:
    """The class subfolder names of `directory`, sorted; hidden folders are not classes."""
    if not os.path.isdir(directory):
        raise InputError(f"No such directory: {directory}.")
    names = sorted(d for d in os.listdir(directory)
                   if not d.startswith(".") and os.path.isdir(os.path.join(directory, d)))
    if len(names) < 2:
        raise InputError(f"{directory} has {len(names)} class subfolder(s); expected one "
                         "subfolder of images per class, at least two.")
    return names


def image_files(folder: str) -> tuple[list[str], int]:
    """Paths of the image files in `folder`, sorted, and the count of entries skipped:
    hidden names, other extensions, and anything that is not a regular file (a pipe
    would block the read, a folder is not an image)."""
    kept, skipped = [], 0
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS) and _regular(path):
            kept.append(path)
        else:
            skipped += 1
    return kept, skipped


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def read_folders(directory: str, names: list[str], image_size: tuple[int, int] | None = None,
                 color_mode: str | None = None) -> FolderImages:
    """Decodes every image under `directory`/NAME for each class NAME.

    `image_size` (height, width) and `color_mode` ("grayscale" or "rgb") default to what
    most images have; other images are converted and resized (bilinear, as Keras does).
    Files that cannot be decoded are skipped and named in the note.
    """
    import tensorflow as tf

    if color_mode is not None and color_mode not in COLOR_MODES:
        raise InputError(f"Expected a colour mode of {' or '.join(COLOR_MODES)}, got {color_mode!r}.")
    decoded, labels, skipped, broken = [], [], 0, []
    for label, name in enumerate(names):
        files, passed = image_files(os.path.join(directory, name))
        skipped += passed
        found = 0
        for path in files:
            image = _decode(tf, path)
            if image is None:
                broken.append(path)
                continue
            decoded.append((path, image))
            labels.append(label)
            found += 1
        if not found:
            raise InputError(f"Class folder {os.path.join(directory, name)} holds no readable images "
                             f"({', '.join(IMAGE_EXTENSIONS)}).")
    size = image_size or _most_common(image.shape[:2] for _, image in decoded)
    mode = color_mode or _most_common("grayscale" if image.shape[-1] < 3 else "rgb" for _, image in decoded)
    channels = COLOR_MODES[mode]
    resized = converted = 0
    images = []
    for path, image in decoded:
        if image.shape[-1] != channels:
            image = _decode(tf, path, channels)
            converted += 1
        if tuple(image.shape[:2]) != tuple(size):
            image = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, size)), 0, 255), tf.uint8).numpy()
            resized += 1
        images.append(image)
    note = _note(len(images), len(names), size, mode, resized, converted, skipped, broken)
    paths = [os.path.relpath(path, directory).replace(os.sep, "/") for path, _ in decoded]
    return FolderImages(np.stack(images), np.asarray(labels, np.int64), tuple(size), mode, note, paths)


def _decode(tf, path: str, channels: int = 0) -> np.ndarray | None:
    """The image at `path` as uint8 (H, W, C), or None if it is not a decodable image."""
    try:
        return tf.io.decode_image(tf.io.read_file(path), channels=channels, dtype=tf.uint8,
                                  expand_animations=False).numpy()
    except (tf.errors.OpError, ValueError):
        return None


def _most_common(values) -> tuple | str:
    counts = collections.Counter(tuple(v) if not isinstance(v, str) else v for v in values)
    return max(counts, key=lambda v: (counts[v], v))


def _note(count: int, classes: int, size, mode: str, resized: int, converted: int, skipped: int,
          broken: list[str]) -> str:
    parts = [f"Read {count} images of {classes} classes as {size[0]}x{size[1]} {mode}"]
    if resized:
        parts.append(f"resized {resized} from other sizes")
    if converted:
        parts.append(f"converted {converted} from another colour mode")
    if skipped:
        parts.append(f"skipped {skipped} entries that are hidden, not image files or not regular files")
    if broken:
        parts.append(f"skipped {len(broken)} files that could not be decoded (first: {broken[0]})")
    return "; ".join(parts) + "."
