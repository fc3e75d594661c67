"""Entry point: ``python -m hep_tasks <stage> ...`` or ``spark-submit hep_tasks/__main__.py <stage> ...``."""

import os
import sys

if __package__ in (None, ""):
    # Run as a file by spark-submit: drop this directory from the import path so that our module
    # names (config, datasets, ...) cannot shadow top-level packages; import the installed package.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(here))

from hep_tasks.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
