"""Networks of every family, registered by name. Importing this package registers them all."""

from network.registry import build_model, get_entry, list_models, register_model

__all__ = ["build_model", "get_entry", "list_models", "register_model"]
