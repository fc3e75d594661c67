"""The process a training barrier task starts: ``python -m hep_tasks.train.worker SPEC INDEX RESULT``.

A fresh process per task and model keeps TensorFlow's cluster state (a gRPC server that cannot be
shut down) out of Spark's reused Python workers. ``TF_CONFIG`` comes from the environment; the
result (a small JSON object) goes to ``RESULT``; logs go to stderr, which the task forwards to
the driver.
"""

from __future__ import annotations

import json
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    spec_path, index, result_path = argv if argv is not None else sys.argv[1:]
    # no timestamp: the driver's logger adds its own when it receives the line
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s [worker {index}] %(name)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # not every all-reduce it sets up
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from hep_tasks.train.loop import WorkerSpec, train_worker

    with open(spec_path) as f:
        spec = WorkerSpec.from_json(f.read())
    result = train_worker(spec, int(index))
    with open(result_path, "w") as f:
        json.dump(result, f)
    if int(index) != 0:  # end before the chief, whose process hosts TensorFlow's coordination service
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
