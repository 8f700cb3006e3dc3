"""Runs exported files the way a deployment would and compares them with the Keras ensemble."""

from __future__ import annotations

import statistics
import time

import numpy as np


class LiteModel:
    """A `.tflite` model in the LiteRT interpreter: raw images in, probabilities out.

    Feeds uint8 to full-int8 models and float32 to the others, as a device would.
    """

    def __init__(self, path: str, threads: int = 1):
        from ai_edge_litert import interpreter as litert  # imported on use: it is not needed to fit

        self.interpreter = litert.Interpreter(model_path=path, num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def output_size(self) -> int:
        return int(self.output["shape"][-1])

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], image[None].astype(self.input["dtype"]))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])[0]

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.predict_one(image) for image in images])

    def latency_ms(self, image: np.ndarray, runs: int = 200) -> float:
        """Median wall time of one batch-1 inference, after a warm-up."""
        self.predict_one(image)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self.predict_one(image)
            times.append(time.perf_counter() - started)
        return 1000 * statistics.median(times)


def saved_model_predict(directory: str, images: np.ndarray) -> np.ndarray:
    """Probabilities from the SavedModel's serving signature, loaded with `tf.saved_model.load`."""
    import tensorflow as tf

    serve = tf.saved_model.load(directory).signatures["serving_default"]
    (output,) = serve(tf.constant(images, tf.float32)).values()
    return output.numpy()


def agreement(reference: np.ndarray, other: np.ndarray) -> float:
    """Share of images whose top-1 class is the same in both."""
    return float(np.mean(np.argmax(reference, axis=1) == np.argmax(other, axis=1)))
