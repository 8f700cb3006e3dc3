"""Runs `keras-sisa` and SIGKILLs it at its Nth file-system step inside a folder.

Usage: python kill_at_step.py N FOLDER keras-sisa-args...  A step is an open, rename,
replace or removal that Python's audit hooks report for a path under FOLDER; the process
dies just before the step happens. N = -1 lists the steps on stderr and lets the command
finish.
"""

import os
import signal
import sys

STEPS = {"open", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree"}


def main() -> None:
    kill_at, folder = int(sys.argv[1]), os.path.abspath(sys.argv[2])
    seen = 0

    def hook(event: str, args: tuple) -> None:
        nonlocal seen
        if event not in STEPS or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        if not os.path.abspath(os.fsdecode(args[0])).startswith(folder + os.sep):
            return
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if kill_at < 0:
            print(f"step {seen}: {event} {os.fsdecode(args[0])}", file=sys.stderr, flush=True)
        seen += 1

    sys.addaudithook(hook)
    sys.argv = ["keras-sisa", *sys.argv[3:]]
    from keras_sisa.cli.entry import run
    run()


if __name__ == "__main__":
    main()
