"""Hand crops of a converted ``data.json`` set as a dataset of ``(inputs, target, sample_id)``.

``inputs`` is ``(C, H, W)`` float32 (C = 3 RGB, or 1 for gray-scale), scaled to [-1, 1];
``target`` the class index (-1 when the class is not in ``class_names``); ``sample_id`` the item
index. Augmentations follow the tutorial spec (shared/reference/gesture.md §3.4).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "GestureAugment",
    "GestureCropDataset",
    "class_counts",
    "images_of",
    "load_data_json",
    "read_data_json",
]

log = logging.getLogger(__name__)

SET_NAMES = ("train_set", "validation_set", "kpi_set")


def read_data_json(path: Path, data_type: str, *, fold: int | None = None) -> list[dict[str, Any]]:
    """The ``images`` of set ``data_type`` (e.g. ``kpi_set``); ``fold`` picks a k-fold split."""
    return images_of(load_data_json(path), path, data_type, fold=fold)


def load_data_json(path: Path) -> dict[str, Any]:
    """The parsed data.json (sets, folds, ``image_root_path``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable data.json ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: data.json must be a JSON object, got {type(data).__name__}")
    return data


def images_of(
    data: Mapping[str, Any], path: Path, data_type: str, *, fold: int | None = None
) -> list[dict[str, Any]]:
    """``read_data_json`` on an already parsed ``data`` (``path`` names it in errors)."""
    source = data
    if fold is not None and data_type != "kpi_set":
        folds = data.get("folds") or []
        if not 0 <= fold < len(folds):
            raise ValueError(f"{path}: fold {fold} requested, the file has {len(folds)} folds")
        source = folds[fold]
    if not isinstance(source.get(data_type), dict) or not isinstance(
        source[data_type].get("images"), list
    ):
        raise ValueError(
            f"{path}: no set {data_type!r} (sets: {[k for k in source if k.endswith('_set')]})"
        )
    return list(source[data_type]["images"])


def class_counts(entries: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> list[int]:
    """Images per class, in ``class_names`` order."""
    counts = dict.fromkeys(class_names, 0)
    for entry in entries:
        if entry["class"] in counts:
            counts[entry["class"]] += 1
    return [counts[name] for name in class_names]


@dataclass(frozen=True, kw_only=True)
class GestureAugment:
    """Train-time augmentation of a resized crop (H, W, 3) uint8, one random draw per item."""

    horizontal_flip: bool = True  # left and right hands make the same gesture
    rotation_range: float = 5.0  # degrees, uniform in ±range
    brightness_range: tuple[float, float] = (0.5, 1.5)
    gamma_prob: float = 0.5
    gamma_range: tuple[float, float] = (0.5, 2.0)
    occlusion_prob: float = 0.5
    occlusion_area: tuple[float, float] = (0.05, 0.25)  # fraction of the crop
    occlusion_aspect: tuple[float, float] = (0.3, 3.33)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = image.shape[:2]
        if self.rotation_range > 0:
            angle = rng.uniform(-self.rotation_range, self.rotation_range)
            matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, 1.0)
            image = cv2.warpAffine(
                image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101
            )
        if self.horizontal_flip and rng.random() < 0.5:
            image = image[:, ::-1]
        pixels = image.astype(np.float32) * rng.uniform(*self.brightness_range)
        pixels = np.clip(pixels, 0.0, 255.0)
        if rng.random() < self.gamma_prob:
            pixels = 255.0 * (pixels / 255.0) ** rng.uniform(*self.gamma_range)
        if rng.random() < self.occlusion_prob:
            self._occlude(pixels, rng)
        return pixels

    def _occlude(self, pixels: np.ndarray, rng: np.random.Generator) -> None:
        """A rectangle of random pixel values (pixel_level occlusion), in place."""
        height, width = pixels.shape[:2]
        area = rng.uniform(*self.occlusion_area) * height * width
        aspect = math.exp(rng.uniform(*np.log(self.occlusion_aspect)))
        h = min(height, max(1, round(math.sqrt(area * aspect))))
        w = min(width, max(1, round(math.sqrt(area / aspect))))
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        pixels[y : y + h, x : x + w] = rng.uniform(0.0, 255.0, (h, w, pixels.shape[2]))


class GestureCropDataset(Dataset):
    """Crops of one data.json set. Entries whose crop file is missing are skipped with a warning.

    Args:
        entries: the set's ``images`` list (``bbox_path`` relative to ``image_root``).
        image_root: the ``image_root_path`` the paths are relative to.
        class_names: index → class name.
        image_size: ``(H, W)`` of the network input.
        gray_scale: one luminance channel instead of RGB.
        augment: train-time augmentation, ``None`` for evaluation.
    """

    def __init__(
        self,
        entries: Sequence[Mapping[str, Any]],
        *,
        image_root: Path,
        class_names: Sequence[str],
        image_size: tuple[int, int] = (160, 160),
        gray_scale: bool = False,
        augment: GestureAugment | None = None,
    ) -> None:
        self.image_root = Path(image_root)
        self.class_names = list(class_names)
        self.class_to_index = {name: i for i, name in enumerate(self.class_names)}
        self.image_size = tuple(image_size)
        self.gray_scale = gray_scale
        self.augment = augment
        self.entries = [e for e in entries if self._crop_path(e).is_file()]
        missing = len(entries) - len(self.entries)
        if missing:
            log.warning(
                "%d of %d crops missing under %s; skipped", missing, len(entries), image_root
            )
        for entry in self.entries:  # a header check per file, not a decode
            if not cv2.haveImageReader(str(self._crop_path(entry))):
                raise ValueError(f"{self._crop_path(entry)}: bbox_path is not an image")
        self.targets = [self.class_to_index.get(e.get("class"), -1) for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def _crop_path(self, entry: Mapping[str, Any]) -> Path:
        path = entry.get("bbox_path") if isinstance(entry, Mapping) else None
        if not isinstance(path, str) or not path:
            raise ValueError(f"data.json entry without a bbox_path: {str(entry)[:200]}")
        return self.image_root / path

    def load(self, index: int) -> np.ndarray:
        """The crop resized to ``image_size``: (H, W, 3) uint8 RGB."""
        path = self._crop_path(self.entries[index])
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: bbox_path is not a readable image")
        height, width = self.image_size
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        pixels = self.load(index)
        if self.augment is not None:
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
            pixels = self.augment(pixels, rng)
        pixels = np.asarray(pixels, dtype=np.float32)
        if self.gray_scale:
            pixels = pixels @ np.asarray([0.299, 0.587, 0.114], np.float32)
            pixels = pixels[:, :, None]
        tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        return tensor / 127.5 - 1.0, self.targets[index], index
