"""Optional dependencies, installed as extras: a missing one is named with its pip command."""

from __future__ import annotations

import importlib

from keras_sisa.errors import InputError

# module -> (pip extra, what needs it)
EXTRAS = {
    "tensorflow_datasets": ("tfds", "Loading TFDS datasets"),
    "matplotlib": ("report", "`report`"),
    "tensorflow_model_optimization": ("compress", "`export --prune` and `--qat`"),
    "tf_keras": ("compress", "`export --prune` and `--qat`"),
    "tensorboard": ("tensorboard", "`--tensorboard` (SliceTensorBoard)"),
}


def require(module: str):
    """Imports `module`, or raises `InputError` saying which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra, purpose = EXTRAS[module]
        raise InputError(f"{purpose} needs {module.split('.')[0]}, which is not installed; run "
                         f"pip install 'keras-sisa[{extra}]'.") from None
