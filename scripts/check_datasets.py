"""Check the dataset folders under a data root:

    python scripts/check_datasets.py --root $DATA [--names OxfordPets ImageNet] [--verify-images]
    python scripts/check_datasets.py --root $DATA --dataset-config-file configs/datasets/my_data.yaml

One row per dataset (found or missing, classes, images per split, split file present); for
anything missing, the exact path expected and where the data comes from. Writes no split files.
Exit status: 0 all good, 1 a dataset is incomplete/broken (or missing when named), 2 bad arguments.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import datasets  # noqa: E402,F401  (registers the zoo)
from e2mim_engine.data.layout_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
