"""The engine's datasets: the readers live in `aqpl.datasets`, torch-free and shared with the API.

Re-exported here so that worker/ml code keeps one import path; tensors are made where they are used
(`worker.ml.training.to_tensor`).
"""

from __future__ import annotations

from aqpl.datasets import (
    DATASET_FORMATS,
    DatasetError,
    DatasetInfo,
    DatasetLimits,
    ImageDataset,
    describe,
    inspect_dataset,
    load_dataset,
    stratified_subset,
)

__all__ = [
    "DATASET_FORMATS",
    "DatasetError",
    "DatasetInfo",
    "DatasetLimits",
    "ImageDataset",
    "describe",
    "inspect_dataset",
    "load_dataset",
    "stratified_subset",
]
