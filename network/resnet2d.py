"""2D ResNets on stacked frames (TAO ActionRecognitionNet "2d" input type).

A clip (C, T, H, W) is fed as (C·T, H, W), channel-major (all frames of R, then G, then B; u then
v for flow), so the first convolution takes 3·T (RGB) or 2·T (flow) channels. Parameter names equal
torchvision's ImageNet ResNets, so ``init_from_imagenet`` can start from one of their checkpoints.

ImageNet init (shared/reference/video.md A9, Part E bug 34): the first-conv filter is averaged over
its 3 RGB channels and copied into every one of the C·T channels. TAO copies it unscaled, which
makes the first-layer response T times larger than the 2D network's on a still clip and so
mismatches the pretrained BN statistics. We divide by T by default (a clip of identical frames
then gives the 2D network's response to its grey-level image); ``rescale=False`` reproduces TAO.
"""

from __future__ import annotations

from os import PathLike

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from network.layers import PooledLinearClassifier
from network.registry import register_model
from network.weights import LoadReport, load_pretrained, read_state_dict

__all__ = ["DEPTHS", "StackedFrameResNet", "init_from_imagenet"]

DEPTHS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    "18": (BasicBlock, (2, 2, 2, 2)),
    "34": (BasicBlock, (3, 4, 6, 3)),
    "50": (Bottleneck, (3, 4, 6, 3)),
    "101": (Bottleneck, (3, 4, 23, 3)),
    "152": (Bottleneck, (3, 8, 36, 3)),
    "tiny": (BasicBlock, (1, 1, 1, 1)),  # tests and demos, with widths 16–128
}
WIDTHS = {"tiny": (16, 32, 64, 128)}  # depth -> stage widths, when not 64–512


class StackedFrameResNet(PooledLinearClassifier):
    """torchvision-style 2D ResNet: (N, in_channels·num_frames, H, W) → logits (N, num_classes)."""

    def __init__(
        self,
        *,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, ...],
        widths: tuple[int, ...] = (64, 128, 256, 512),
        num_frames: int = 16,
        in_channels: int = 3,
        num_classes: int = 400,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes, self.num_frames, self.in_channels = num_classes, num_frames, in_channels
        stacked = in_channels * num_frames
        self.conv1 = nn.Conv2d(stacked, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes = widths[0]
        for index, (width, depth) in enumerate(zip(widths, depths)):
            stride = 1 if index == 0 else 2
            out_planes = width * block.expansion
            downsample = None
            if stride != 1 or in_planes != out_planes:
                downsample = nn.Sequential(
                    nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                    nn.BatchNorm2d(out_planes),
                )
            blocks = [block(in_planes, width, stride, downsample)]
            blocks += [block(out_planes, width) for _ in range(depth - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            in_planes = out_planes
        self.add_head(in_planes, num_classes, dropout)
        self._init_weights()

    def _init_weights(self) -> None:  # torchvision's ResNet init
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C·T, H, W), channel-major → feature map (N, num_features, H/32, W/32)."""
        expected = self.in_channels * self.num_frames
        if x.ndim != 4 or x.shape[1] != expected:
            raise ValueError(
                f"expected (N, {expected}, H, W) = {self.in_channels} channels × "
                f"{self.num_frames} frames stacked, got {tuple(x.shape)}"
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def init_from_imagenet(
    model: StackedFrameResNet,
    source: str | PathLike | dict[str, torch.Tensor],
    *,
    rescale: bool = True,
) -> LoadReport:
    """Initialise from a 2D ImageNet ResNet state_dict (or file); its ``fc`` is never copied.

    conv1 (O, 3, 7, 7) is averaged over the 3 input channels and repeated into the model's
    C·T channels, divided by T when ``rescale`` (see the module docstring; TAO: no division).
    """
    state = {k: v for k, v in read_state_dict(source).items() if not k.startswith("fc.")}
    conv1 = state.pop("conv1.weight", None)
    if conv1 is not None:
        stacked = model.in_channels * model.num_frames
        mean = conv1.float().mean(dim=1, keepdim=True)
        if rescale:
            mean = mean / model.num_frames
        state["conv1.weight"] = mean.repeat(1, stacked, 1, 1).to(conv1.dtype)
    return load_pretrained(model, state, inflate=False)


def _register(depth: str) -> None:
    block, depths = DEPTHS[depth]
    name = f"resnet2d_{depth}"

    def build(
        *,
        num_classes: int = 400,
        num_frames: int = 16,
        in_channels: int = 3,
        dropout: float = 0.5,
        pretrained_2d: str | None = None,
    ) -> StackedFrameResNet:
        model = StackedFrameResNet(
            block=block,
            depths=depths,
            widths=WIDTHS.get(depth, (64, 128, 256, 512)),
            num_frames=num_frames,
            in_channels=in_channels,
            num_classes=num_classes,
            dropout=dropout,
        )
        if pretrained_2d is not None:
            init_from_imagenet(model, pretrained_2d)
        return model

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"Build ``{name}`` on (N, in_channels·num_frames, H, W) stacked frames."
    tags = ("2d", "tiny") if depth == "tiny" else ("2d", "tao")
    register_model(name, family="video", input_layout="NCHW", tags=tags)(build)


for _depth in DEPTHS:
    _register(_depth)
