"""CoOp-compatible entry point: python train.py --root DATA --trainer CoOp ... [KEY VALUE ...]"""
import sys

import datasets  # noqa: F401  (registers the dataset zoo)
import trainers  # noqa: F401  (registers every method and its config node)
from e2mim_engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
