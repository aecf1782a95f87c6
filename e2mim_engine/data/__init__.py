from .base import (DATASET_REGISTRY, BenchmarkDataset, DatasetBase, Datum, build_dataset,  # noqa: F401
                   generate_fewshot_dataset, read_and_split_data, read_split, save_split,
                   subsample_classes)
from .data_manager import DataManager, DatasetWrapper, build_data_loader  # noqa: F401
from .transforms import build_transform  # noqa: F401
