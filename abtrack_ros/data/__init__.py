"""Datasets: readers for the tracking benchmarks, the synthetic generator, real-image sources."""
from .datasets import FORMATS, open_dataset, parse_spec
from .image_sources import find_real_images, find_sample_videos
from .sequence import DatasetError, Sequence, load_frame, valid_boxes
from .synthetic import DIFFICULTIES, Difficulty, generate_synthetic

__all__ = [
    "DIFFICULTIES",
    "DatasetError",
    "Difficulty",
    "FORMATS",
    "Sequence",
    "find_real_images",
    "find_sample_videos",
    "generate_synthetic",
    "load_frame",
    "open_dataset",
    "parse_spec",
    "valid_boxes",
]
