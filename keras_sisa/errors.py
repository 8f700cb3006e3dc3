"""The one exception type that means "the user's input is wrong"."""


class InputError(ValueError):
    """Bad input from the user: the message names the problem and what to do.

    The CLI prints it as one line and exits with code 2; everything else is a bug
    and keeps its traceback.
    """


class ExportError(RuntimeError):
    """An export that did not meet its checks (e.g. TFLite parity); nothing was written."""


class UnsupportedVersion(RuntimeError):
    """A TensorFlow or Keras internal keras-sisa relies on has moved (`internals.py`)."""
