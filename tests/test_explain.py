"""Grad-CAM (export.explain): a map for every video network of the registry, and a map that is
right: a tiny 3D network trained on the synthetic moving-shape videos puts most of the heat on
the moving object, and the map of the other class differs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from data.video import synthetic
from export.explain import (
    cam_layers,
    flow_to_rgb,
    grad_cam,
    heat_mass_fraction,
    joint_importance,
    overlay_heat,
    resolve_target,
    save_joint_importance,
    write_explanation,
)
from network import build_model, list_models

TINY_VIDEO = {  # network -> input shapes (batch of one) of a 4-frame 32x32 clip
    "r3d_tiny": [(1, 3, 4, 32, 32)],
    "r2plus1d_tiny": [(1, 3, 4, 32, 32)],
    "srtg_r3d_tiny": [(1, 3, 4, 32, 32)],
    "srtg_r2plus1d_tiny": [(1, 3, 4, 32, 32)],
    "tao_r3d_tiny": [(1, 3, 4, 32, 32)],
    "mtnet_tiny": [(1, 3, 4, 32, 32)],
    "x3d_tiny": [(1, 3, 4, 32, 32)],
    "resnet2d_tiny": [(1, 12, 32, 32)],
    "joint_tiny": [(1, 3, 4, 32, 32), (1, 2, 4, 32, 32)],
}
BUILD = {
    "resnet2d_tiny": {"num_frames": 4},
    "joint_tiny": {"rgb_frames": 4, "of_frames": 4},
}


# torchvision's video transformers have no convolutional last stage (layer4) to explain
TRANSFORMERS = {"mvit_tiny", "swin3d_tiny"}


def test_every_tiny_video_network_is_covered():
    assert set(list_models(family="video", tag="tiny")) <= set(TINY_VIDEO) | TRANSFORMERS


@pytest.mark.parametrize("name", sorted(TRANSFORMERS & set(list_models())))
def test_transformers_are_refused_with_one_line(name):
    model = build_model(name, num_classes=3)
    with pytest.raises(ValueError, match="no last convolutional stage"):
        grad_cam(model, torch.randn(1, 3, 8, 32, 32))


@pytest.mark.parametrize("name", sorted(TINY_VIDEO))
def test_grad_cam_gives_a_map_per_stream_at_the_clip_size(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3, **BUILD.get(name, {}))
    inputs = tuple(torch.randn(shape) for shape in TINY_VIDEO[name])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = grad_cam(model, inputs if len(inputs) > 1 else inputs[0])  # the predicted class
    streams = ["rgb", "flow"] if name == "joint_tiny" else ["rgb"]
    assert list(result.maps) == streams and result.target == int(result.probs.argmax())
    frames = 4  # stacked frames (resnet2d): one spatial map, repeated for the 4 frames
    for heat in result.maps.values():
        assert heat.shape == (frames, 32, 32)
        # scaled to a peak of 1; an untrained stream may have no positive evidence (all 0)
        assert heat.min() >= 0 and heat.max() in (pytest.approx(1.0), 0.0)
    assert max(heat.max() for heat in result.maps.values()) == pytest.approx(1.0)
    assert result.probs.shape == (3,) and result.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert all(p.grad is None for p in model.parameters())  # nothing left for an optimizer
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched


def test_layer_picks_the_stage_of_every_stream_and_others_are_refused():
    model = build_model("r3d_tiny", num_classes=2)
    assert cam_layers(model) == {"rgb": model.layer4}
    assert cam_layers(model, "layer3") == {"rgb": model.layer3}
    joint = build_model("joint_tiny", num_classes=2, rgb_frames=4, of_frames=4)
    assert cam_layers(joint, "layer2") == {"rgb": joint.rgb.layer2, "flow": joint.flow.layer2}
    heat = grad_cam(model, torch.randn(1, 3, 8, 32, 32), layer="layer3").maps["rgb"]
    assert heat.shape == (8, 32, 32)
    for layer in ("fc", "layer9", "stem"):  # only the residual stages
        with pytest.raises(ValueError, match=f"r3d_tiny: no convolutional stage \\({layer}\\)"):
            cam_layers(model, layer)


def test_target_by_name_index_or_prediction():
    probs = np.array([0.2, 0.5, 0.3])
    names = ["walk", "run", "jump"]
    assert resolve_target(None, names, probs) == 1
    assert resolve_target("jump", names, probs) == 2
    assert resolve_target("0", names, probs) == 0
    with pytest.raises(ValueError, match="--target 'swim' is not a class"):
        resolve_target("swim", names, probs)
    with pytest.raises(ValueError, match="outside the model's 3 classes"):
        resolve_target(3, names, probs)


def test_overlay_changes_only_where_there_is_heat():
    frames = np.full((2, 8, 8, 3), 100, np.uint8)
    heat = np.zeros((2, 8, 8), np.float32)
    heat[:, 2:4, 2:4] = 1.0
    out = overlay_heat(frames, heat)
    changed = np.any(out != frames, axis=-1)
    assert changed[:, 2:4, 2:4].all() and changed.sum() == 2 * 4
    colours = flow_to_rgb(np.full((2, 1, 4, 4), 128, np.uint8))
    assert colours.shape == (1, 4, 4, 3) and colours.max() == 0  # no motion is black


def test_write_explanation_files(tmp_path):
    import av

    model = build_model("r3d_tiny", num_classes=2)
    clip = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    inputs = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 255
    result = grad_cam(model, inputs)
    mp4, png = write_explanation(tmp_path, "v", {"rgb": clip}, result, ["a", "b"], fps=6.0)
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 4 and stream.average_rate == 6
    # shown at >= 240 pixels high: 32 -> 256 (factor 8), clip | overlay side by side
    assert frames[0].shape == (256, 512, 3)
    assert Image.open(png).size == (4 * 256, 256)


@pytest.mark.parametrize("name", sorted(list_models(family="skeleton", tag="tiny")))
def test_joint_importance_for_every_skeleton_network(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=2)
    # class 0 weighs every feature positively (the last block ends in a ReLU, so it has positive
    # evidence wherever a feature fires); an untrained class 1 may have none (an all-zero map)
    head = model.fc if hasattr(model, "fc") else model.fcn
    head.weight.data[0] = head.weight.data[0].abs()
    joints = model.A.shape[-1]
    inputs = torch.randn(1, 3, 20, joints, 1)
    result = joint_importance(model, inputs, target=0)
    heat = result.maps["joints"]
    assert heat.shape == (20, joints) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    assert heat.std() > 0.01
    other = joint_importance(model, inputs, target=1).maps["joints"]
    assert other.max() in (pytest.approx(1.0), 0.0)
    assert np.abs(heat - other).mean() > 0.05  # the map depends on the class explained
    names = [f"j{i}" for i in range(joints)]
    path = save_joint_importance(tmp_path / "joints.png", result, names, ["a", "b"], fps=30.0)
    assert Image.open(path).size[0] == 900


def test_joint_importance_refuses_a_video_network_in_one_line():
    with pytest.raises(ValueError, match="r3d_tiny: no graph convolution blocks"):
        joint_importance(build_model("r3d_tiny", num_classes=2), torch.randn(1, 3, 4, 5, 1))


def test_nvpose_explain_for_ctrgcn_writes_the_plot(tmp_path, capsys):
    import train_nvpose
    from train.checkpoint import atomic_save, make_checkpoint

    torch.manual_seed(0)
    model = build_model("ctrgcn_tiny", num_classes=2)
    checkpoint = tmp_path / "ctr.pth"
    atomic_save(make_checkpoint(model, family="skeleton", class_names=["a", "b"]), checkpoint)
    data = tmp_path / "poses.npy"
    np.save(data, np.random.default_rng(0).normal(size=(2, 3, 16, model.A.shape[-1], 2)))
    argv = ["explain", "--checkpoint", str(checkpoint), "--data", str(data), "--sequence", "1",
            "--target", "b", "--out", str(tmp_path / "out"), "--device", "cpu"]  # fmt: skip
    assert train_nvpose.main(argv) == 0
    assert Image.open(tmp_path / "out" / "sequence_0001_joints.png").size[0] == 900
    assert "joint importance for b" in capsys.readouterr().out


# ----------------------------------------------------------------------------- right, not decorative
CLASSES = ["move_left", "move_right"]
SIZE, FRAMES = (96, 96), 8


def _video_and_masks(class_name: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic video and the object's coverage per frame: the steps of
    ``synthetic.render_video`` repeated with the same generator (checked equal below)."""
    rng = synthetic.video_rng(0, class_name, index)
    (w, h), margin = SIZE, synthetic.MARGIN
    sw, sh = w + 2 * margin, h + 2 * margin
    track = synthetic.CLASSES[class_name](rng, FRAMES, w, h)
    track.x, track.y = track.x + margin, track.y + margin
    background = synthetic._background(rng, sw, sh)
    colour = synthetic._object_colour(rng, background)
    jitter = np.clip(np.cumsum(rng.normal(0, 0.5, size=(FRAMES, 2)), axis=0), -margin, margin)
    frames = np.empty((FRAMES, h, w, 3), np.uint8)
    masks = np.empty((FRAMES, h, w), bool)
    for t in range(FRAMES):
        mask = synthetic._mask(track, t, sw, sh)
        edge = (cv2.dilate(mask, np.ones((3, 3), np.uint8)) - mask)[..., None] * track.alpha[t]
        cover = mask[..., None] * track.alpha[t]
        scene = background * (1 - cover - edge) + colour * cover + colour * 0.35 * edge
        scene += rng.normal(0, 3.0, size=scene.shape)
        dx, dy = (np.round(jitter[t]) + margin).astype(int)
        frames[t] = np.clip(scene[dy : dy + h, dx : dx + w], 0, 255).astype(np.uint8)
        masks[t] = mask[dy : dy + h, dx : dx + w] > 0.5
    return frames, masks


def _clip(frames: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(frames).float().div(255).permute(3, 0, 1, 2)
    return (x - 0.45) / 0.225


def _near(masks: np.ndarray, pixels: int) -> np.ndarray:
    """(T, H, W) masks grown by ``pixels`` in every direction."""
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])


def _train_to_separate(x, y, x_held, y_held, epochs: int = 25):
    """r3d_tiny trained until it is right on every held-out clip and confident on every batch."""
    torch.manual_seed(0)
    model = build_model("r3d_tiny", num_classes=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    for _ in range(epochs):
        model.train()
        losses = []
        for batch in torch.randperm(len(x)).split(8):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            separated = bool((model(x_held).argmax(1) == y_held).all())
        if separated and max(losses) < 0.05:
            break
    assert separated, "the tiny network did not learn to separate left from right"
    return model


@pytest.mark.slow
def test_heat_lies_on_the_moving_object_and_depends_on_the_target(capsys):
    """layer4 of r3d_tiny has one time step and a 16-pixel cell for 8 frames of 96x96: its map
    shows where the object went (the track), blurred by half a cell; layer3 (two time steps,
    8-pixel cells) follows the object in time. Per frame the heat must lie on the object far
    more than the object's share of the frame; the map of the other class must differ."""
    reference = synthetic.render_video("move_left", synthetic.video_rng(0, "move_left", 3),
                                       frames=FRAMES, size=SIZE)  # fmt: skip
    assert np.array_equal(_video_and_masks("move_left", 3)[0], reference)
    train = [(_clip(_video_and_masks(c, i)[0]), k) for k, c in enumerate(CLASSES) for i in range(8)]
    held = [(_video_and_masks(c, i), k) for k, c in enumerate(CLASSES) for i in range(8, 11)]
    x, y = torch.stack([c for c, _ in train]), torch.tensor([k for _, k in train])
    x_held = torch.stack([_clip(f) for (f, _), _ in held])
    y_held = torch.tensor([k for _, k in held])
    model = _train_to_separate(x, y, x_held, y_held)
    rows = {key: [] for key in ("track", "track_area", "object4", "object3", "area", "differs")}
    for ((_, masks), _), clip in zip(held, x_held):
        heat = grad_cam(model, clip[None]).maps["rgb"]  # layer4, the default
        track = _near(np.broadcast_to(masks.any(axis=0), masks.shape), 8)
        rows["track"].append(heat_mass_fraction(heat, track))
        rows["track_area"].append(track.mean())
        rows["object4"].append(heat_mass_fraction(heat, masks))
        rows["object3"].append(heat_mass_fraction(grad_cam(model, clip[None], layer="layer3")
                                                  .maps["rgb"], masks))  # fmt: skip
        rows["area"].append(masks.mean())
        other = grad_cam(model, clip[None], target=1 - int(model(clip[None]).argmax())).maps["rgb"]
        rows["differs"].append(float(np.abs(heat - other).mean()))
    mean = {key: float(np.mean(values)) for key, values in rows.items()}
    with capsys.disabled():
        print(
            f"\nGrad-CAM mass on the object's track (+8 px) {mean['track']:.2f} (area "
            f"{mean['track_area']:.2f}); on the object per frame: layer4 {mean['object4']:.2f}, "
            f"layer3 {mean['object3']:.2f} (area {mean['area']:.3f}); the other class's map "
            f"differs by {mean['differs']:.2f}"
        )
    assert mean["track"] > 0.65 and mean["track"] > 1.2 * mean["track_area"]
    assert min(mean["object4"], mean["object3"]) > 1.5 * mean["area"]
    assert min(rows["differs"]) > 0.1
