"""Accuracy over the current label space, overall and per class."""

from __future__ import annotations

import numpy as np


def accuracy_report(probabilities: np.ndarray, y: np.ndarray, label_space: list[int],
                    class_names: list[str]) -> dict:
    """Top-1 accuracy on the test images of retained classes, overall and per class.

    Images of classes outside `label_space` (forgotten ones) cannot be right and are
    left out; `excluded` counts them.
    """
    y = np.asarray(y, np.int64)
    retained = np.isin(y, label_space)
    predicted = np.asarray(label_space)[np.argmax(probabilities, axis=1)]
    correct = predicted == y
    per_class = {class_names[c]: float(np.mean(correct[y == c])) for c in label_space if np.any(y == c)}
    return {
        "accuracy": float(np.mean(correct[retained])) if retained.any() else float("nan"),
        "count": int(retained.sum()),
        "excluded": int((~retained).sum()),
        "per_class": per_class,
    }
