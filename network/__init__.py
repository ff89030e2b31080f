"""Networks of every family, registered by name. Importing this package registers them all."""

from network import ctrgcn, gesturenet, joint, mtnet, resnet2d, stgcn, stgcnpp, video_resnet  # noqa: F401  # noqa: F401  (pyskl-family skeleton networks)
from network.registry import build_model, get_entry, list_models, register_model

__all__ = ["build_model", "get_entry", "list_models", "register_model"]
