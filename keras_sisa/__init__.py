"""keras-sisa: exact machine unlearning for Keras image classifiers (SISA ensembles)."""

from keras_sisa.classifier import SISAClassifier, load
from keras_sisa.data import Dataset
from keras_sisa.errors import ExportError, InputError
from keras_sisa.models import default_cnn, small_gate, strided_gate
from keras_sisa.parallel import Execution
from keras_sisa.training import TrainingConfig

__all__ = ["SISAClassifier", "load", "Dataset", "InputError", "ExportError", "TrainingConfig", "Execution",
           "default_cnn", "small_gate", "strided_gate"]
__version__ = "0.1.0"
