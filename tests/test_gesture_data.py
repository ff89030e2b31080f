"""Synthetic gesture set and the crop dataset: determinism, format, item shapes, augmentation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data.gesture.annotation import GESTURE_CLASSES, parse_annotation
from data.gesture.dataset import GestureAugment, GestureCropDataset, read_data_json
from data.gesture.synthetic import SynthConfig, draw_hand, make_synthetic_dataset

SMALL = SynthConfig(num_users=2, images_per_class=1, image_width=80, image_height=60, seed=3)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    make_synthetic_dataset(root, SMALL)
    return root


def test_synth_layout_and_annotations(synth_root: Path) -> None:
    set_dir = synth_root / "original" / "data"
    annotations = sorted((set_dir / "annotation").glob("*.json"))
    assert len(annotations) == 2 * len(GESTURE_CLASSES)
    users = json.loads((set_dir / "data.json").read_text())["users"]
    assert sorted(users) == ["id01", "id02"]
    labels = set()
    for path in annotations:
        parsed = parse_annotation(path)
        labels.add(parsed.label)
        x, y, w, h = parsed.box
        assert parsed.image_size == (80, 60) and w > 0 and h > 0
        assert x >= 0 and x + w <= 80 and y >= 0 and y + h <= 60
        assert Path(parsed.task_path).is_file()
        assert parsed.metadata["user_id"] in users
    assert labels == set(GESTURE_CLASSES)
    assert (synth_root / "dataset_config.json").is_file()


def test_synth_is_deterministic(synth_root: Path, tmp_path: Path) -> None:
    make_synthetic_dataset(tmp_path, SMALL)
    name = "id02/id02_r03/000000.png"
    first = (synth_root / "original" / "data" / name).read_bytes()
    assert first == (tmp_path / "original" / "data" / name).read_bytes()


def test_drawn_box_covers_the_hand_pixels() -> None:
    canvas = np.zeros((100, 100, 3), np.uint8)
    x, y, w, h = draw_hand(
        canvas, "stop", centre=(50, 60), size=30, angle=10, mirror=False, skin_bgr=(120, 160, 220)
    )
    ys, xs = np.nonzero(canvas.any(axis=2))
    assert xs.min() >= x and xs.max() < x + w and ys.min() >= y and ys.max() < y + h


def _entries(root: Path, count: int) -> list[dict]:
    crop = root / "crop.png"
    import cv2

    cv2.imwrite(str(crop), np.full((30, 20, 3), (0, 0, 255), np.uint8))  # pure red (BGR)
    return [{"bbox_path": "crop.png", "class": "ok"}, {"bbox_path": "gone.png", "class": "ok"}][
        :count
    ]


def test_crop_dataset_items(tmp_path: Path) -> None:
    dataset = GestureCropDataset(
        _entries(tmp_path, 2), image_root=tmp_path, class_names=GESTURE_CLASSES, image_size=(16, 24)
    )
    assert len(dataset) == 1  # the missing crop is skipped
    inputs, target, sample_id = dataset[0]
    assert inputs.shape == (3, 16, 24) and inputs.dtype == torch.float32
    assert target == GESTURE_CLASSES.index("ok") and sample_id == 0
    assert torch.allclose(inputs[0], torch.ones(16, 24)) and inputs[2].max() < -0.99  # RGB order
    gray = GestureCropDataset(
        _entries(tmp_path, 1),
        image_root=tmp_path,
        class_names=["ok"],
        image_size=(8, 8),
        gray_scale=True,
    )
    assert gray[0][0].shape == (1, 8, 8)


def test_augment_keeps_shape_and_range() -> None:
    rng = np.random.default_rng(0)
    image = np.full((32, 32, 3), 128, np.uint8)
    augment = GestureAugment(occlusion_prob=1.0, gamma_prob=1.0)
    out = augment(image, rng)
    assert out.shape == (32, 32, 3) and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, 128)


def test_read_data_json_errors(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"train_set": {"images": []}}))
    assert read_data_json(path, "train_set") == []
    with pytest.raises(ValueError, match="no set 'kpi_set'"):
        read_data_json(path, "kpi_set")
    with pytest.raises(ValueError, match="fold 1"):
        read_data_json(path, "train_set", fold=1)
    path.write_text("{")
    with pytest.raises(ValueError, match="unreadable"):
        read_data_json(path, "train_set")
