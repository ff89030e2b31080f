"""Networks of every family, registered by name. Importing this package registers them all."""

from network import gesturenet, joint, mtnet, resnet2d, stgcn, video_resnet  # noqa: F401
from network.registry import build_model, get_entry, list_models, register_model

__all__ = ["build_model", "get_entry", "list_models", "register_model"]
