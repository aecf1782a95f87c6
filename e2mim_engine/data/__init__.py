"""Datasets in Dassl's structures (Datum, split files, few-shot draws) and the loaders.

The modules: ``datum`` (Datum), ``splits`` (CoOp split files, split rules, few-shot draw,
base/new subsampling), ``folders`` (listings, the cached folder index, layout hints,
classnames.txt), ``bases`` (the dataset base classes, DATASET_REGISTRY, build_dataset).
They are torch-free and re-exported here for the dataset modules; the loaders
(``data_manager``, ``transforms``, ``mixup_sampler``) import torch and are imported from
their own modules.
"""
from .bases import (DATASET_REGISTRY, BenchmarkDataset, DatasetBase, TestOnlyDataset, ZooDataset,  # noqa: F401
                    all_shots_note, build_dataset, resolve_data_root)
from .datum import Datum  # noqa: F401
from .folders import (CLASSNAMES_SOURCE, IMAGE_EXTENSIONS, find_classnames_file, index_class_folders,  # noqa: F401
                      is_image_file, layout_hint, list_class_folders, list_files, read_classnames)
from .splits import (dataset_writes_allowed, generate_fewshot_dataset, no_dataset_writes,  # noqa: F401
                     read_and_split_data, read_split, save_dataset_file, save_generated_split, save_split, split_per_class,
                     split_trainval, subsample_classes)
