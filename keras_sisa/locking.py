"""One writer at a time per run: an exclusive `flock` on `RUN/.lock`.

The kernel releases the lock when its holder dies, even by SIGKILL, so a crashed
command never leaves a stale lock; the next holder deletes the temporary files that
the dead one had not yet renamed into place. The file names the holder (pid, command, since)
for the message a waiting or refused command prints. Stores on remote filesystems
(gs://) have no local lock: run one writer at a time there yourself.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import sys
import time

from keras_sisa.errors import InputError
from keras_sisa.store import LOCK, Store



def holder(root: str) -> str:
    """Who holds the lock of `root`, as the lock file names it."""
    try:
        with open(os.path.join(root, LOCK)) as f:
            info = json.loads(f.read() or "{}")
        return f"pid {info['pid']} ({info['command']}, since {info['since']})"
    except (OSError, ValueError, KeyError):
        return "another command"


def open_lock(path: str, flags: int, mode: str):
    """Opens the lock file without following a symbolic link: a link planted there would
    make the lock holder overwrite whatever file it points to."""
    try:
        return os.fdopen(os.open(path, flags | os.O_NOFOLLOW, 0o644), mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(f"{path} is a symbolic link; a run's lock must be a plain file. "
                             "Remove the link and run the command again.") from None
        raise


def wait_for_writer(root: str, timeout: float = 3600.0) -> bool:
    """Blocks a reader while a writer holds the lock of `root`, saying so once; returns
    whether it waited. Takes no lock itself and creates no file."""
    path = os.path.join(root, LOCK)
    if "://" in root or not os.path.isfile(path):
        return False
    with open_lock(path, os.O_RDONLY, "r") as f:
        waited = flock_waiting(f, fcntl.LOCK_SH, root, timeout)
        fcntl.flock(f, fcntl.LOCK_UN)
        return waited


def flock_waiting(file, mode: int, root: str, timeout: float) -> bool:
    """Takes `flock(mode)` on `file`, saying once who holds it if that means waiting;
    returns whether it waited. Gives up with an `InputError` after `timeout` seconds."""
    deadline, waited = time.monotonic() + timeout, False
    while True:
        try:
            fcntl.flock(file, mode | fcntl.LOCK_NB)
            return waited
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise InputError(f"{root} is locked by {holder(root)}; wait for it to finish, "
                                 "then run the command again.") from None
            if not waited:
                print(f"Waiting for {root}, locked by {holder(root)}.", file=sys.stderr, flush=True)
                waited = True
            time.sleep(0.2)


class RunLock:
    """Holds the write lock of a run directory for the length of a `with` block.

    Example:

        with RunLock("runs/fashion", "forget"):
            ...  # purge and retrain

    Args:
        root: the run directory (must exist).
        command: what the holder is doing, shown to whoever waits.
        timeout: seconds to wait for another writer before giving up.
    """

    def __init__(self, root: str, command: str, timeout: float = 3600.0):
        self.root, self.command, self.timeout = root, command, timeout
        self._file = None

    def __enter__(self) -> RunLock:
        if "://" in self.root:
            return self
        path = os.path.join(self.root, LOCK)
        self._file = open_lock(path, os.O_RDWR | os.O_CREAT, "a+")
        try:
            flock_waiting(self._file, fcntl.LOCK_EX, self.root, self.timeout)
        except InputError:
            self._file.close()
            raise
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps({
            "pid": os.getpid(), "command": self.command,
            "since": datetime.datetime.now().isoformat(timespec="seconds")}))
        self._file.flush()
        # Only the lock holder writes, so temporary files found now belong to a writer that died.
        Store(self.root).remove_partial_writes()
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
