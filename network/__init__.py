"""Networks of every family, registered by name. Importing this package registers them all."""

from network import (  # noqa: F401  (importing a module registers its networks)
    ctrgcn,
    gesturenet,
    joint,
    mtnet,
    resnet2d,
    stgcn,
    stgcnpp,
    tv_video,
    video_resnet,
    x3d,
)
from network.registry import build_model, get_entry, list_models, register_model

__all__ = ["build_model", "get_entry", "list_models", "register_model"]
