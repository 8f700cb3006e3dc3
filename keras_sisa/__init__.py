"""keras-sisa: exact machine unlearning for Keras image classifiers (SISA ensembles).

The public names load on first use, so that `import keras_sisa.cli.entry` (the
console script) can answer `--version` without importing TensorFlow.
"""

import importlib
import os

# In a source checkout, cli/ and export/ sit beside this package (setup.cfg maps them in
# as keras_sisa.cli and keras_sisa.export); let the checkout import them the same way.
_checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_checkout, "setup.cfg")) and os.path.isdir(os.path.join(_checkout, "export")):
    __path__.append(_checkout)

_EXPORTS = {
    "SISAClassifier": "keras_sisa.classifier", "load": "keras_sisa.classifier",
    "Dataset": "keras_sisa.data", "InputError": "keras_sisa.errors", "ExportError": "keras_sisa.errors",
    "UnsupportedVersion": "keras_sisa.errors",
    "TrainingConfig": "keras_sisa.config", "Execution": "keras_sisa.parallel",
    "SliceTensorBoard": "keras_sisa.callbacks",
    "default_cnn": "keras_sisa.models", "small_gate": "keras_sisa.models", "strided_gate": "keras_sisa.models",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_sisa' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted(list(globals()) + __all__)
