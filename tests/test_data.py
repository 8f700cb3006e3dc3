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


def test_folder_with_mixed_image_sizes_is_refused(small, tmp_path):
    write_folder(tmp_path, {"a": small.x_train[:2], "b": np.zeros((2, 20, 20, 1), np.uint8)})
    with pytest.raises(InputError, match="Images differ in shape.*--image-size"):
        data.load(data_dir=str(tmp_path))


def test_truncated_image_is_refused(small, tmp_path):
    write_folder(tmp_path, {"a": small.x_train[:2], "b": small.x_train[2:4]})
    path = tmp_path / "b" / "1.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match="Cannot decode image .*1.png"):
        data.load(data_dir=str(tmp_path))


def test_unknown_dataset_is_refused():
    with pytest.raises(InputError, match="Unknown dataset 'mnistt'"):
        data.load("mnistt")


def test_npz_missing_arrays_is_refused(small, tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=small.x_train, y_train=small.y_train)
    with pytest.raises(InputError, match="lacks arrays"):
        data.load(npz=str(path))
