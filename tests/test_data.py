"""Data sources and the validation every source goes through."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_sisa import InputError, data


def write_folder(root, images_by_class):
    for name, images in images_by_class.items():
        os.makedirs(root / name, exist_ok=True)
        for k, image in enumerate(images):
            tf.io.write_file(str(root / name / f"{k}.png"), tf.io.encode_png(image))


def test_fashion_mnist_is_the_real_dataset(fashion):
    assert fashion.x_train.shape == (60000, 28, 28, 1) and fashion.x_test.shape == (10000, 28, 28, 1)
    assert fashion.x_train.dtype == np.uint8
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert fashion.class_names[9] == "Ankle boot"


def test_limit_per_class_keeps_the_first_images_with_their_ids(fashion):
    limited = data.limit_per_class(fashion, 5)
    assert np.bincount(limited.y_train).tolist() == [5] * 10
    assert limited.ids.tolist() == sorted(np.concatenate(
        [np.flatnonzero(fashion.y_train == c)[:5] for c in range(10)]).tolist())
    assert np.array_equal(limited.x_train, fashion.x_train[limited.ids])


def test_npz_round_trip(small, tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=small.x_train, y_train=small.y_train, x_test=small.x_test,
             y_test=small.y_test, class_names=np.array(small.class_names))
    loaded = data.load(npz=str(path))
    assert loaded.class_names == small.class_names
    assert np.array_equal(loaded.x_train, small.x_train)


def test_directory_with_holdout_split(small, tmp_path):
    write_folder(tmp_path, {name: small.x_train[small.y_train == k][:10]
                            for k, name in enumerate(["cat", "dog", "emu"])})
    loaded = data.load(data_dir=str(tmp_path), test_split=0.2)
    assert loaded.class_names == ["cat", "dog", "emu"]
    assert np.bincount(loaded.y_train).tolist() == [8, 8, 8] and np.bincount(loaded.y_test).tolist() == [2, 2, 2]
    assert loaded.input_shape == (28, 28, 1)


def test_directory_with_test_dir_and_resize(small, tmp_path):
    for split in ("train", "test"):
        write_folder(tmp_path / split, {name: small.x_train[small.y_train == k][:3]
                                        for k, name in enumerate(["a", "b"])})
    loaded = data.load(data_dir=str(tmp_path / "train"), test_dir=str(tmp_path / "test"), image_size=(14, 14))
    assert loaded.x_train.shape == (6, 14, 14, 1) and loaded.x_test.shape == (6, 14, 14, 1)


def test_tfds_dataset_by_name():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        loaded = data.load("tfds:cifar10")
    assert loaded.input_shape == (32, 32, 3)
    assert len(loaded.class_names) == 10 and len(loaded.y_train) == 20 and len(loaded.y_test) == 20


@pytest.mark.parametrize("make, message", [
    (lambda s: dict(y_train=s.y_train + 10), "out of range"),
    (lambda s: dict(x_train=np.where(s.x_train > 100, np.nan, s.x_train.astype(float))), "NaN"),
    (lambda s: dict(x_train=s.x_train.astype(float) * 2), "0..255"),
    (lambda s: dict(x_test=s.x_test[:, :14]), "differ in shape"),
    (lambda s: dict(y_train=np.zeros_like(s.y_train)), "only 1 class"),
    (lambda s: dict(x_train=s.x_train[:, :, :, 0, None].repeat(2, -1)), "shape"),
])
def test_bad_arrays_are_refused_with_a_clear_message(small, make, message):
    import dataclasses

    with pytest.raises(InputError, match=message):
        data.validate(dataclasses.replace(small, **make(small)))


def test_folder_with_one_class_is_refused(small, tmp_path):
    write_folder(tmp_path, {"only": small.x_train[:3]})
    with pytest.raises(InputError, match="class subfolder"):
        data.load(data_dir=str(tmp_path))


def test_folder_of_mixed_sizes_is_resized_to_the_most_common(small, tmp_path):
    write_folder(tmp_path, {"a": small.x_train[:3], "b": np.full((2, 20, 20, 1), 200, np.uint8)})
    loaded = data.load(data_dir=str(tmp_path), test_split=0.2)
    assert loaded.input_shape == (28, 28, 1)
    assert np.all(np.concatenate([loaded.x_train, loaded.x_test])[np.r_[loaded.y_train, loaded.y_test] == 1] == 200)
    assert "as 28x28 grayscale; resized 2 from other sizes" in loaded.notes[0]


def test_folder_of_mixed_colour_modes_is_converted(small, tmp_path):
    grey = small.x_train[:4]
    rgb = np.repeat(small.x_train[4:6], 3, axis=-1)
    rgba = np.concatenate([rgb[:1], np.full((1, 28, 28, 1), 255, np.uint8)], axis=-1)
    write_folder(tmp_path / "mixed", {"a": grey[[0, 1, 3]], "b": rgb})
    write_folder(tmp_path / "mixed" / "c", {"": grey[2:3]})
    tf.io.write_file(str(tmp_path / "mixed" / "c" / "rgba.png"), tf.io.encode_png(rgba[0]))
    loaded = data.load(data_dir=str(tmp_path / "mixed"), test_split=0.3)
    assert loaded.input_shape == (28, 28, 1) and "converted 3 from another colour mode" in loaded.notes[0]
    as_rgb = data.load(data_dir=str(tmp_path / "mixed"), test_split=0.3, color_mode="rgb")
    assert as_rgb.input_shape == (28, 28, 3)
    assert np.array_equal(as_rgb.x_train[..., 0], as_rgb.x_train[..., 2])  # grey and RGB here are all grey


def test_stray_entries_in_a_class_folder_are_skipped_and_counted(small, tmp_path):
    write_folder(tmp_path, {"a": small.x_train[:2], "b": small.x_train[2:4]})
    (tmp_path / "a" / ".DS_Store.png").write_bytes(b"\0\1binary")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    os.mkfifo(tmp_path / "b" / "pipe.png")  # reading it would block forever
    os.makedirs(tmp_path / "b" / "more.png")
    broken = tmp_path / "b" / "1.png"
    broken.write_bytes(broken.read_bytes()[:40])
    loaded = data.load(data_dir=str(tmp_path), test_split=0.3)
    assert len(loaded.y_train) + len(loaded.y_test) == 3
    assert "skipped 4 entries that are hidden, not image files or not regular files" in loaded.notes[0]
    assert "skipped 1 files that could not be decoded (first: " in loaded.notes[0] and "1.png" in loaded.notes[0]


def test_class_folder_without_a_readable_image_is_refused(small, tmp_path):
    write_folder(tmp_path, {"a": small.x_train[:2], "b": small.x_train[2:3]})
    path = tmp_path / "b" / "0.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match="holds no readable images"):
        data.load(data_dir=str(tmp_path))


def test_unknown_dataset_is_refused():
    with pytest.raises(InputError, match="Unknown dataset 'mnistt'"):
        data.load("mnistt")


def test_npz_missing_arrays_is_refused(small, tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=small.x_train, y_train=small.y_train)
    with pytest.raises(InputError, match="lacks arrays"):
        data.load(npz=str(path))


def test_a_missing_optional_package_names_its_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if never installed
    with pytest.raises(InputError, match=r"pip install 'keras-sisa\[tfds\]'"):
        data.load("tfds:cifar10")


@pytest.mark.parametrize("module", ["tensorflow_model_optimization", "tf_keras"])
def test_compression_without_its_extra_names_compress(monkeypatch, module):
    import sys
    from keras_sisa.optional import require

    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(InputError, match=r"`export --prune` and `--qat` .*pip install 'keras-sisa\[compress\]'"):
        require(module)
