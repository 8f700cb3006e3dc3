"""SavedModel to TFLite, with the converter's quantization modes.

The converter reads the SavedModel, because `from_keras_model` is unreliable with
Keras 3 on this TensorFlow. Full-int8 files take uint8 images, so a device feeds raw pixels.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import tensorflow as tf

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


def convert(saved_model_dir: str, quantize: str = "none",
            representative: Iterable[np.ndarray] | None = None) -> bytes:
    """The `.tflite` bytes of a SavedModel; `representative` yields single images for int8."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        images = list(representative)
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    return converter.convert()
