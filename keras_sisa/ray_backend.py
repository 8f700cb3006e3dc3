"""Components as Ray tasks, on a local Ray runtime or an existing cluster (`keras-sisa[ray]`).

Each task is `tasks.train_in_run` on one component: it reads and writes the store
through `tf.io.gfile`, so every node must see the run directory at the same path
(a shared filesystem, or gs://) and have keras-sisa and the run's model builders
installed. Ray runs a task again when its worker dies (`max_retries`), and the new
attempt continues from the component's last slice checkpoint.
"""

from __future__ import annotations

import os

from keras_sisa.progress import POLL_SECONDS
from keras_sisa.tasks import train_in_run


def train_components(directory: str, names: list[str], execution, threads: int, progress=None) -> dict[str, float]:
    """Runs one Ray task per component and waits for all; returns each one's seconds.

    Each task's TensorFlow starts with the run's thread-pool size (it changes the bits
    of the weights), whatever the node's cores; a task reserves one Ray CPU. A
    `progress` (`SliceProgress`) is polled while they run.
    """
    import ray  # an optional extra: `Execution` has checked that it is installed

    if "://" not in directory:
        directory = os.path.abspath(directory)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=execution.ray_address, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
    pools = {name: str(threads) for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
    try:
        task = ray.remote(num_cpus=1, max_retries=execution.retries,
                          runtime_env={"env_vars": pools})(train_in_run)
        refs = [task.remote(directory, name) for name in names]
        waiting = list(refs)
        while waiting:
            _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=POLL_SECONDS)
            if progress:
                progress.poll()
        return dict(zip(names, ray.get(refs)))
    finally:
        if started_here:
            ray.shutdown()
