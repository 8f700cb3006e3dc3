"""The `keras-sisa` console script: answers `--version` without TensorFlow, and keeps
TensorFlow's start-up logs (CUDA probes, CPU features, absl) off the user's terminal."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
import tempfile


def run() -> None:
    if sys.argv[1:] == ["--version"]:
        print(f"keras-sisa, version {importlib.metadata.version('keras-sisa')}")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_stderr_held():
        import tensorflow  # noqa: F401  (its C++ start-up lines go to the held stderr)
        from keras_sisa.cli.main import main
    main()


@contextlib.contextmanager
def native_stderr_held():
    """Points file descriptor 2 at a scratch file for the block; if the block fails, what
    was written there is shown, so an import error is never hidden."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
