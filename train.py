"""CoOp-compatible entry point: python train.py --root DATA --trainer CoOp ... [KEY VALUE ...]
(the same command as ``e2mim-train``; the project must be installed: scripts/setup_env.sh)."""
import sys

from e2mim_tools.train import main

if __name__ == "__main__":
    sys.exit(main())
