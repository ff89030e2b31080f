"""State-dict manifests (tensor name → shape) of the reference codes whose checkpoints users load.

Written from reading the public reference code, not copied from it:

- SRTG (github.com/alexandrosstergiou/Squeeze-and-Recursion-Temporal-Gates, network/srtg_resnet.py):
  ``VideoResNet`` with ``BasicStem`` (3,7,7) or ``R2Plus1dStem`` (45 mid channels), a parameter-free
  max-pool, ``BasicBlock`` / ``Bottleneck`` (expansion 1) whose convolutions are ``nn.Sequential``
  (``Conv3DSimple`` wraps its Conv3d: ``convZ.0.0.weight``), ``sar.lstm`` (2-layer LSTM, hidden =
  input = block width) after each block when ``recursion``, head ``fc``. ``get_symbol`` builds
  the plain nets (``recursion=False``) for the ``srtg_*`` names.
- TAO ActionRecognitionNet (github.com/NVIDIA/tao_pytorch_backend, cv/action_recognition/model):
  ``ResNet3d`` (resnet3d.py: ``conv1`` (64, C, 5, 7, 7), ``bn1``, blocks ``conv1``/``bn1``…,
  ``downsample.0``/``.1``, head ``fc_cls``), ``ResNet`` 2D (resnet.py: ``conv1`` (64, C·T, 7, 7)),
  ``JointModel`` (ar_model.py: ``model_rgb``, ``model_of``, ``fc1`` (num_fc, 2n), ``fc2``); TAO
  saves them in a Lightning checkpoint under ``model.``.
"""

from __future__ import annotations

from collections.abc import Callable

Shape = tuple[int, ...]
Manifest = dict[str, Shape]

# depth -> (block, blocks per stage), as in every reference's arch table
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
WIDTHS = (64, 128, 256, 512)


def bn(prefix: str, channels: int) -> Manifest:
    """A BatchNorm's five entries."""
    names = ("weight", "bias", "running_mean", "running_var")
    return {f"{prefix}.{name}": (channels,) for name in names} | {
        f"{prefix}.num_batches_tracked": ()
    }


def lstm(prefix: str, channels: int, layers: int = 2, gates: int = 4) -> Manifest:
    """nn.LSTM (gates=4) / nn.GRU (gates=3) with input = hidden = ``channels``."""
    found: Manifest = {}
    for layer in range(layers):
        found[f"{prefix}.weight_ih_l{layer}"] = (gates * channels, channels)
        found[f"{prefix}.weight_hh_l{layer}"] = (gates * channels, channels)
        found[f"{prefix}.bias_ih_l{layer}"] = (gates * channels,)
        found[f"{prefix}.bias_hh_l{layer}"] = (gates * channels,)
    return found


def _blocks(depth: int, expansion: int, block_fn: Callable[..., Manifest]) -> Manifest:
    """layer1..4 of a ResNet: ``block_fn(prefix, in_planes, planes, downsample)``."""
    block, counts = DEPTHS[depth]
    found: Manifest = {}
    in_planes = 64
    for stage, (planes, count) in enumerate(zip(WIDTHS, counts)):
        out = planes * (expansion if block == "bottleneck" else 1)
        for index in range(count):
            source = in_planes if index == 0 else out
            downsample = index == 0 and (stage > 0 or source != out)
            found |= block_fn(f"layer{stage + 1}.{index}", block, source, planes, out, downsample)
        in_planes = out
    return found


# ----------------------------------------------------------------------------- SRTG
def _srtg_conv(prefix: str, conv: str, cin: int, cout: int, mid: int) -> Manifest:
    """Conv3DSimple (a Sequential holding one Conv3d) or Conv2Plus1D at ``prefix``."""
    if conv == "3d":
        return {f"{prefix}.0.weight": (cout, cin, 3, 3, 3)}
    return (
        {f"{prefix}.0.weight": (mid, cin, 1, 3, 3)}
        | bn(f"{prefix}.1", mid)
        | {f"{prefix}.3.weight": (cout, mid, 3, 1, 1)}
    )


def srtg_resnet(depth: int, conv: str = "3d", *, sr: bool, num_classes: int = 400) -> Manifest:
    """SRTG's r3d_* / r2plus1d_* (``sr=False``) or srtg_r3d_* / srtg_r2plus1d_* (``sr=True``)."""
    if conv == "3d":
        found = {"stem.0.weight": (64, 3, 3, 7, 7)} | bn("stem.1", 64)
    else:
        found = {"stem.0.weight": (45, 3, 1, 7, 7)} | bn("stem.1", 45)
        found |= {"stem.3.weight": (64, 45, 3, 1, 1)} | bn("stem.4", 64)

    def block(prefix: str, kind: str, cin: int, planes: int, out: int, downsample: bool):
        mid = (cin * planes * 27) // (cin * 9 + 3 * planes)  # from the block's in/planes, once
        entries: Manifest = {}
        if kind == "basic":
            entries |= _srtg_conv(f"{prefix}.conv1.0", conv, cin, planes, mid)
            entries |= bn(f"{prefix}.conv1.1", planes)
            entries |= _srtg_conv(f"{prefix}.conv2.0", conv, planes, planes, mid)
            entries |= bn(f"{prefix}.conv2.1", planes)
        else:
            entries |= {f"{prefix}.conv1.0.weight": (planes, cin, 1, 1, 1)}
            entries |= bn(f"{prefix}.conv1.1", planes)
            entries |= _srtg_conv(f"{prefix}.conv2.0", conv, planes, planes, mid)
            entries |= bn(f"{prefix}.conv2.1", planes)
            entries |= {f"{prefix}.conv3.0.weight": (out, planes, 1, 1, 1)}
            entries |= bn(f"{prefix}.conv3.1", out)
        if downsample:
            entries |= {f"{prefix}.downsample.0.weight": (out, cin, 1, 1, 1)}
            entries |= bn(f"{prefix}.downsample.1", out)
        if sr:
            entries |= lstm(f"{prefix}.sar.lstm", out)
        return entries

    found |= _blocks(depth, 1, block)  # SRTG's Bottleneck has expansion 1
    return found | {"fc.weight": (num_classes, 512), "fc.bias": (num_classes,)}


# ----------------------------------------------------------------------------- TAO
def tao_resnet(
    depth: int, *, input_type: str = "3d", in_channels: int = 3, num_classes: int = 5
) -> Manifest:
    """TAO's ResNet3d (``input_type="3d"``, in_channels 3 rgb / 2 of) or 2D ResNet (in_channels
    = C·T stacked frames)."""
    kernel = (3, 3, 3) if input_type == "3d" else (3, 3)
    point = (1, 1, 1) if input_type == "3d" else (1, 1)
    stem = (5, 7, 7) if input_type == "3d" else (7, 7)
    found = {"conv1.weight": (64, in_channels, *stem)} | bn("bn1", 64)

    def block(prefix: str, kind: str, cin: int, planes: int, out: int, downsample: bool):
        if kind == "basic":
            entries = {f"{prefix}.conv1.weight": (planes, cin, *kernel)} | bn(
                f"{prefix}.bn1", planes
            )
            entries |= {f"{prefix}.conv2.weight": (planes, planes, *kernel)}
            entries |= bn(f"{prefix}.bn2", planes)
        else:
            entries = {f"{prefix}.conv1.weight": (planes, cin, *point)} | bn(
                f"{prefix}.bn1", planes
            )
            entries |= {f"{prefix}.conv2.weight": (planes, planes, *kernel)}
            entries |= bn(f"{prefix}.bn2", planes)
            entries |= {f"{prefix}.conv3.weight": (out, planes, *point)} | bn(f"{prefix}.bn3", out)
        if downsample:
            entries |= {f"{prefix}.downsample.0.weight": (out, cin, *point)}
            entries |= bn(f"{prefix}.downsample.1", out)
        return entries

    found |= _blocks(depth, 4, block)
    features = 512 * (4 if DEPTHS[depth][0] == "bottleneck" else 1)
    return found | {"fc_cls.weight": (num_classes, features), "fc_cls.bias": (num_classes,)}


def tao_joint(
    depth: int, *, input_type: str, rgb_frames: int, of_frames: int, num_classes: int, num_fc: int
) -> Manifest:
    """TAO's JointModel: both streams, then fc1 (num_fc, 2n) → ReLU → fc2 (n, num_fc)."""
    rgb_in = 3 if input_type == "3d" else 3 * rgb_frames
    of_in = 2 if input_type == "3d" else 2 * of_frames
    found: Manifest = {}
    for prefix, channels in (("model_rgb", rgb_in), ("model_of", of_in)):
        stream = tao_resnet(
            depth, input_type=input_type, in_channels=channels, num_classes=num_classes
        )
        found |= {f"{prefix}.{name}": shape for name, shape in stream.items()}
    found |= {"fc1.weight": (num_fc, 2 * num_classes), "fc1.bias": (num_fc,)}
    return found | {"fc2.weight": (num_classes, num_fc), "fc2.bias": (num_classes,)}


def tao_names(name: str) -> str:
    """An ActRec video-ResNet / joint tensor name as TAO calls it (inverse of our mapping)."""
    import re

    for ours, theirs in (("rgb.", "model_rgb."), ("flow.", "model_of.")):
        if name.startswith(ours):
            return theirs + tao_names(name[len(ours) :])
    name = re.sub(r"^stem\.0\.", "conv1.", name)
    name = re.sub(r"^stem\.1\.", "bn1.", name)
    name = re.sub(r"^(layer\d+\.\d+\.)conv(\d)\.0\.", r"\1conv\2.", name)
    name = re.sub(r"^(layer\d+\.\d+\.)conv(\d)\.1\.", r"\1bn\2.", name)
    return re.sub(r"^fc\.", "fc_cls.", name)


def srtg_names(name: str, shape: Shape) -> str:
    """An ActRec srtg_r3d / MTNet tensor name as the SRTG code calls it (its 3×3×3 residual
    kernels sit one Sequential deeper)."""
    import re

    if tuple(shape[2:]) == (3, 3, 3):
        name = re.sub(r"^(layer\d+\.\d+\.conv\d)\.0\.weight$", r"\1.0.0.weight", name)
    name = name.replace(".sr.recurrent.", ".sar.lstm.")
    return re.sub(r"\.(sr_short|sr_long)\.recurrent\.", r".\1.op.", name)
