"""CoOp's ``train.py`` as a command (``e2mim-train``, ``python -m e2mim_tools.train``): imports
the method and dataset packages, whose modules register themselves, then runs the engine's CLI."""
import sys

import e2mim_datasets  # noqa: F401  (registers the dataset zoo)
import e2mim_trainers  # noqa: F401  (registers every method and its config node)
from e2mim_engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
