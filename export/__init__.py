"""Export of the current (unlearned) ensemble to one SavedModel and one TFLite file."""

from keras_sisa.export.exporter import FORMATS, THRESHOLDS, export
from keras_sisa.export.tflite import QUANTIZATIONS

__all__ = ["export", "FORMATS", "QUANTIZATIONS", "THRESHOLDS"]
