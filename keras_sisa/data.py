"""Data sources: every loader returns a validated `Dataset` of raw 0..255 images.

Images stay as the source gives them (pixel values 0..255, shape (N, H, W, C));
preprocessing lives inside the models so that the exported model takes raw images.
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import os
import unicodedata
import zipfile

import numpy as np

from keras_sisa import folders, owners as owner_ids
from keras_sisa.errors import InputError
from keras_sisa.optional import require

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclasses.dataclass
class Dataset:
    """Training and test images with integer labels and class names.

    `ids` gives every training image a stable identity (its position in the
    source), which is how a user names the samples to forget; `owners` (optional, one
    per training image, None for none) names the person each belongs to, `test_owners`
    the same for test images. `notes` are lines for the user about how the source was
    read (images resized, files skipped).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    ids: np.ndarray = None
    notes: list[str] = dataclasses.field(default_factory=list)
    owners: list | None = None
    test_owners: list | None = None

    def __post_init__(self):
        if self.ids is None:
            self.ids = np.arange(len(self.y_train), dtype=np.int64)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])


def validate(data: Dataset) -> Dataset:
    """Checks shapes, labels and pixel values; returns the dataset with 4-D images.

    Raises `InputError` naming the first problem found.
    """
    names = [str(n) for n in data.class_names]
    if len(names) < 2:
        raise InputError(f"Expected at least 2 classes, got {len(names)}: {names}. "
                         "A classifier needs two or more classes.")
    if len(set(names)) != len(names):
        raise InputError(f"Class names must be unique, got {names}.")
    broken = [n for n in names if not n.strip() or any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in n)]
    if broken:
        raise InputError(f"Class name {broken[0]!r} is empty or holds a line break or control character; "
                         "labels.txt on a device would mislabel it. Rename the class.")
    x_train = _images(data.x_train, "x_train")
    x_test = _images(data.x_test, "x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InputError(f"Train and test images differ in shape: {x_train.shape[1:]} vs "
                         f"{x_test.shape[1:]}. Resize them to one shape.")
    y_train = _labels(data.y_train, len(x_train), len(names), "y_train")
    y_test = _labels(data.y_test, len(x_test), len(names), "y_test")
    present = np.unique(y_train)
    if len(present) < 2:
        raise InputError(f"The training data holds only {len(present)} class; "
                         "a classifier needs images of two or more classes.")
    ids = np.asarray(data.ids, dtype=np.int64)
    if ids.shape != y_train.shape or len(np.unique(ids)) != len(ids):
        raise InputError("Sample ids must be unique, one per training image.")
    owners = owner_ids.normalize(data.owners, len(y_train)) if data.owners is not None else None
    test_owners = (owner_ids.normalize(data.test_owners, len(y_test), "test_owners")
                   if data.test_owners is not None else None)
    return Dataset(x_train, y_train, x_test, y_test, names, ids, list(data.notes), owners, test_owners)


def _images(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise InputError(f"Expected `{name}` to hold numbers, got dtype {x.dtype}.")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise InputError(f"`{name}` holds complex numbers; pixels must be real values in 0..255.")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise InputError(f"Expected `{name}` to have shape (N, H, W) or (N, H, W, 1|3), "
                         f"got shape {x.shape}.")
    if len(x) == 0:
        raise InputError(f"`{name}` holds no images.")
    if 0 in x.shape[1:3]:
        raise InputError(f"`{name}` holds images of {x.shape[1]}x{x.shape[2]} pixels; images need at "
                         "least one pixel (the default models take 16x16 or more).")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise InputError(f"`{name}` contains NaN or infinite pixel values; clean the images first.")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255:
        raise InputError(f"Expected `{name}` pixel values in 0..255, got {low:g}..{high:g}.")
    if np.issubdtype(x.dtype, np.floating) and np.array_equal(x, np.round(x)):
        return x.astype(np.uint8)
    return x if x.dtype == np.uint8 else x.astype(np.float32)


def _labels(y, count: int, num_classes: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != count:
        raise InputError(f"Expected `{name}` to have shape ({count},), got {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.array_equal(y, np.round(y)):
            raise InputError(f"Expected `{name}` to hold integer labels, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    bad = y[(y < 0) | (y >= num_classes)]
    if len(bad):
        raise InputError(f"`{name}` has label {bad[0]} out of range; expected 0..{num_classes - 1} "
                         f"for {num_classes} class names.")
    return y


def numbered_classes(y, name: str = "`y`") -> list[str]:
    """Class names "0".."K-1" for integer labels given without names. A label larger than
    the number of images is refused: it would make classes with no image (and, near
    2**31, an allocation that fills the memory)."""
    y = np.asarray(y).reshape(-1)
    if y.size == 0 or not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        raise InputError(f"{name} must hold integer labels, got {y.size} values of dtype {y.dtype}.")
    if not np.all(np.isfinite(y)) or not np.array_equal(y, np.round(y)):
        raise InputError(f"{name} must hold integer labels; it holds NaN, infinite or fractional values.")
    low, high = float(np.min(y)), float(np.max(y))
    if low < 0 or high >= y.size:
        raise InputError(f"{name} has labels {low:g}..{high:g} for {y.size} images and no class names; "
                         "number the classes 0..K-1 or give class_names.")
    return [str(i) for i in range(int(high) + 1)]


def class_indices(requested, class_names: list[str]) -> list[int]:
    """Class indices from names or indices; an unknown name gets the closest known one."""
    indices = []
    for item in requested:
        if isinstance(item, (int, np.integer)) and 0 <= item < len(class_names):
            indices.append(int(item))
        elif str(item) in class_names:
            indices.append(class_names.index(str(item)))
        else:
            close = difflib.get_close_matches(str(item), class_names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InputError(f"Unknown class {item!r}; the classes are {', '.join(class_names)}.{hint}")
    return indices


def limit_per_class(data: Dataset, n: int) -> Dataset:
    """Keeps the first `n` training images of each class (their ids stay the same)."""
    if n <= 0:
        raise InputError(f"Expected limit_per_class (--limit-per-class) to be a positive number, got {n}.")
    keep = np.concatenate([np.flatnonzero(data.y_train == c)[:n]
                           for c in range(len(data.class_names))])
    keep.sort()
    owners = [data.owners[k] for k in keep] if data.owners is not None else None
    return dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep],
                               ids=data.ids[keep], owners=owners)


def load_fashion_mnist(directory: str = FASHION_MNIST_DIR) -> Dataset:
    """Fashion-MNIST from Debian's `dataset-fashion-mnist` files, else through TFDS."""
    if os.path.isfile(os.path.join(directory, "train-images-idx3-ubyte.gz")):
        read = lambda name: _read_idx(os.path.join(directory, name))
        return validate(Dataset(read("train-images-idx3-ubyte.gz"), read("train-labels-idx1-ubyte.gz"),
                                read("t10k-images-idx3-ubyte.gz"), read("t10k-labels-idx1-ubyte.gz"),
                                list(FASHION_MNIST_CLASSES)))
    try:
        return load_tfds("fashion_mnist")
    except InputError as error:
        raise InputError(f"Fashion-MNIST is not in {directory} and TFDS could not load it ({error}). "
                         "Install it with `apt-get install dataset-fashion-mnist`.") from None


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_tfds(name: str, data_dir: str | None = None) -> Dataset:
    """Any TFDS image-classification dataset with `train` and `test` splits."""
    tfds = require("tensorflow_datasets")

    try:
        (train, test), info = tfds.load(name, split=["train", "test"], as_supervised=True,
                                        with_info=True, data_dir=data_dir)
        # Batches read one by one: `batch_size=-1` aborts the process in TFDS 4.9 with mock data.
        arrays = [_numpy(split) for split in (train, test)]
    except Exception as error:  # TFDS raises many types: unknown name, no network, bad split.
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"TFDS could not load {name!r}: {message}") from None
    label = info.supervised_keys[1] if info.supervised_keys else "label"
    (x_train, y_train), (x_test, y_test) = arrays
    return validate(Dataset(x_train, y_train, x_test, y_test, list(info.features[label].names)))


def _numpy(split) -> tuple[np.ndarray, np.ndarray]:
    tfds = require("tensorflow_datasets")

    batches = list(tfds.as_numpy(split.batch(4096)))
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "class_names", "owners")


def load_npz(path: str) -> Dataset:
    """Arrays `x_train`, `y_train`, `x_test`, `y_test`, optional `class_names` and optional
    `owners` (one string or integer per training image)."""
    try:
        _check_declared_shapes(path)
        with np.load(path, allow_pickle=False) as f:
            present = sorted(f.files)
            arrays = {key: f[key] for key in NPZ_ARRAYS if key in f.files}  # others stay unread
    except FileNotFoundError:
        raise InputError(f"No such npz file: {path}.") from None
    except InputError:
        raise
    except ValueError as error:
        raise InputError(f"{path} is not a plain npz of arrays ({error}); save it with "
                         "numpy.savez and no object arrays.") from None
    except Exception as error:
        raise InputError(f"{path} is not a readable npz file: {error}.") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise InputError(f"{path} lacks arrays {missing}; expected x_train, y_train, x_test, "
                         f"y_test (and optional class_names), found {present}.")
    y_train = np.asarray(arrays["y_train"])
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"].reshape(-1)]
    else:
        names = numbered_classes(y_train, f"`y_train` in {path}")
    owners = arrays["owners"].reshape(-1).tolist() if "owners" in arrays else None
    return validate(Dataset(arrays["x_train"], y_train, arrays["x_test"], arrays["y_test"], names,
                            owners=owners))


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _check_declared_shapes(path: str) -> None:
    """Reads only the headers of the npz's used members and refuses, before anything is
    decompressed, a member declaring more bytes than it holds or more images than labels."""
    shapes = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            if key not in NPZ_ARRAYS:
                continue
            with archive.open(info) as member:
                reader = _HEADER_READERS.get(np.lib.format.read_magic(member))
                shape, _, dtype = reader(member) if reader else ((), None, None)
                if dtype is None or dtype.hasobject:
                    continue  # a newer npy version or pickled objects: np.load refuses what it must
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > info.file_size:
                    raise InputError(f"{info.filename} in {path} declares shape {shape} ({declared:,} bytes) "
                                     f"but holds {info.file_size:,} bytes; the file is damaged, save it again.")
            shapes[key] = shape
    pairs = (("x_train", "y_train", "one label per training image"),
             ("x_test", "y_test", "one label per test image"),
             ("owners", "y_train", "one owner per training image"))
    for rows, labels, need in pairs:
        if shapes.get(rows) and shapes.get(labels) and shapes[rows][0] != shapes[labels][0]:
            raise InputError(f"`{rows}` in {path} declares {shapes[rows][0]:,} entries but `{labels}` "
                             f"{shapes[labels][0]:,}; give {need}.")


OWNERS_CSV = "owners.csv"


def load_directory(train_dir: str, test_dir: str | None = None, test_split: float = 0.2,
                   image_size: tuple[int, int] | None = None, color_mode: str | None = None,
                   seed: int = 0) -> Dataset:
    """A folder of class subfolders of images, as `keras.utils.image_dataset_from_directory` reads.

    Class names are the subfolder names in sorted order. Images are resized to
    `image_size` and converted to `color_mode` (defaults: what most training images
    have; see `folders.read_folders`). Without `test_dir`, a seeded `test_split` share of
    each class is held out for testing. An `owners.csv` in a folder (rows `path,owner`)
    names the person each image belongs to.
    """
    names = folders.class_folders(train_dir)
    train = folders.read_folders(train_dir, names, image_size, color_mode)
    owners = _folder_owners(train_dir, train.paths)
    if test_dir is not None:
        test_names = folders.class_folders(test_dir)
        if test_names != names:
            raise InputError(f"The test folder's classes {test_names} differ from the training "
                             f"folder's {names}.")
        test = folders.read_folders(test_dir, names, train.image_size, train.color_mode)
        return validate(Dataset(train.x, train.y, test.x, test.y, names,
                                notes=[train.note, "Test folder: " + test.note], owners=owners,
                                test_owners=_folder_owners(test_dir, test.paths)))
    if not 0 < test_split < 1:
        raise InputError(f"Expected test_split (--test-split) between 0 and 1, got {test_split}.")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(train.y), bool)
    for c in range(len(names)):
        members = np.flatnonzero(train.y == c)
        count = int(round(test_split * len(members)))
        held[rng.choice(members, count, replace=False)] = True
    kept = np.flatnonzero(~held)
    pick = lambda rows: [owners[k] for k in rows] if owners is not None else None
    return validate(Dataset(train.x[kept], train.y[kept], train.x[held], train.y[held], names, ids=kept,
                            notes=[train.note], owners=pick(kept), test_owners=pick(np.flatnonzero(held))))


def _folder_owners(directory: str, paths: list[str]) -> list | None:
    path = os.path.join(directory, OWNERS_CSV)
    return owner_ids.read_csv(path, paths) if os.path.isfile(path) else None


def load(dataset: str | None = None, data_dir: str | None = None, test_dir: str | None = None,
         npz: str | None = None, limit: int | None = None, **directory_options) -> Dataset:
    """Resolves the CLI's data options to a dataset: exactly one source, default Fashion-MNIST."""
    chosen = [s for s in (dataset, data_dir, npz) if s is not None]
    if len(chosen) > 1:
        raise InputError("Give one data source: dataset, data_dir or npz (--dataset, --data-dir, --npz), not several.")
    if data_dir is not None:
        data = load_directory(data_dir, test_dir, **directory_options)
    elif npz is not None:
        data = load_npz(npz)
    elif dataset in (None, "fashion_mnist"):
        data = load_fashion_mnist()
    elif dataset.startswith("tfds:") and len(dataset) > 5:
        data = load_tfds(dataset[5:])
    else:
        raise InputError(f"Unknown dataset {dataset!r}; use 'fashion_mnist' or 'tfds:NAME' "
                         "(e.g. tfds:cifar10), or --data-dir / --npz for your own data.")
    return data if limit is None else limit_per_class(data, limit)
