"""A local study worker: ``python -m eval.study.worker`` runs the cells its parent sends it.

The parent (eval.study.executors.LocalExecutor) writes pickled CellTasks to stdin and reads
("progress", key, stage, fraction, message) and ("result", CellResult) pickles from the worker's
original stdout; anything a method prints goes to stderr so it cannot corrupt the stream.
"""

from __future__ import annotations

import os
import pickle
import sys


def main() -> int:
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    from eval.study.executors import run_cell

    def send(message: tuple) -> None:
        pickle.dump(message, channel)
        channel.flush()

    while True:
        try:
            task = pickle.load(sys.stdin.buffer)
        except EOFError:
            return 0
        if task is None:
            return 0
        result = run_cell(task, lambda key, p: send(("progress", key, p.stage, p.fraction, p.message)))
        send(("result", result))


if __name__ == "__main__":
    sys.exit(main())
