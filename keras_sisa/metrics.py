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


def routing_accuracy(gate_probabilities: np.ndarray, y: np.ndarray, gate_outputs: list[int],
                     shard_of_class: dict[int, int]) -> float:
    """Share of the test images of retained classes that the gate sends to the shard holding
    their class: the bound on the ensemble's accuracy that the gate sets."""
    y = np.asarray(y, np.int64)
    retained = np.isin(y, list(shard_of_class))
    if not retained.any():
        return float("nan")
    routed = np.asarray(gate_outputs)[np.argmax(gate_probabilities[retained], axis=1)]
    return float(np.mean(routed == np.asarray([shard_of_class[int(c)] for c in y[retained]])))


def confusion_matrix(probabilities: np.ndarray, y: np.ndarray, label_space: list[int]) -> list[list[int]]:
    """Counts of (true class, predicted class) over the test images of retained classes,
    rows and columns in `label_space` order."""
    y = np.asarray(y, np.int64)
    retained = np.isin(y, label_space)
    predicted = np.argmax(probabilities[retained], axis=1)
    truth = np.searchsorted(label_space, y[retained])
    counts = np.zeros((len(label_space), len(label_space)), np.int64)
    np.add.at(counts, (truth, predicted), 1)
    return counts.tolist()


def membership_scores(probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Scores a membership-inference attack uses when the true class has no output: the
    top probability, and the negative entropy (both higher for images the model trained on)."""
    p = np.clip(probabilities, 1e-12, 1.0)
    return {"confidence": p.max(axis=1), "negative_entropy": (p * np.log(p)).sum(axis=1)}


def auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """ROC AUC of a score that should be higher for members (Mann-Whitney U, ties halved)."""
    scores = np.concatenate([members, non_members])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # tied scores share the mean of their ranks
    ranks = (upper - (counts - 1) / 2.0)[inverse]
    u = ranks[:len(members)].sum() - len(members) * (len(members) + 1) / 2
    return float(u / (len(members) * len(non_members)))


def roc_curve(members: np.ndarray, non_members: np.ndarray, points: int = 101) -> dict:
    """The ROC curve of a membership score at `points` thresholds, with its AUC."""
    thresholds = np.quantile(np.concatenate([members, non_members]), np.linspace(1, 0, points))
    return {"auc": auc(members, non_members),
            "fpr": [float(np.mean(non_members >= t)) for t in thresholds],
            "tpr": [float(np.mean(members >= t)) for t in thresholds]}
