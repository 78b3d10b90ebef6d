"""Pixels of a source dataset: decode its images and resize them.

Shared by every importer so that all of them resize the same way (area averaging to shrink,
bilinear to grow, nearest neighbour for labels).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from collect.importers.source import SourceError


def read_image(path: Path) -> np.ndarray:
    """A source image (JPEG or PNG) as HxWx3 uint8 RGB; SourceError naming the file otherwise."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        why = "is missing" if not path.is_file() else "does not decode as an image"
        raise SourceError(f"{path} {why} (re-extract the dataset's archive)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image to (height, width): area averaging to shrink, bilinear to grow."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrink = h * w < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label image to (height, width), nearest neighbour: each output pixel takes the
    label of the source pixel under its centre (OpenCV's INTER_NEAREST_EXACT), never a blend."""
    h, w = size
    if labels.shape == (h, w):
        return labels
    return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


__all__ = ["read_image", "resize_labels", "resize_rgb"]
