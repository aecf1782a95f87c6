"""Datasets in Dassl's structures (Datum, split files, few-shot draws) and the loaders.

The names below are the torch-free part, which dataset modules use; the loaders
(``data_manager``, ``transforms``, ``mixup_sampler``) import torch and are imported from
their own modules.
"""
from .base import (DATASET_REGISTRY, BenchmarkDataset, DatasetBase, Datum, build_dataset,  # noqa: F401
                   generate_fewshot_dataset, read_and_split_data, read_split, save_split,
                   subsample_classes)
from .base import (CLASSNAMES_SOURCE, IMAGE_EXTENSIONS, TestOnlyDataset, ZooDataset,  # noqa: F401
                   dataset_writes_allowed, find_classnames_file, index_class_folders, is_image_file,
                   layout_hint, list_class_folders, list_files, no_dataset_writes, read_classnames,
                   resolve_data_root, save_generated_split, split_per_class, split_trainval)
