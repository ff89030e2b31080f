"""pyskl / MMAction2 checkpoint names: ``backbone.`` + ``cls_head.`` state dicts.

pyskl (mmcv) and MMAction2 (mmengine) save ``{"state_dict": {...}, "meta": {...}}`` whose keys are
the recognizer's: ``backbone.<the backbone's own names>`` and ``cls_head.fc_cls.*`` (pyskl
``GCNHead``/``SimpleHead``) or ``cls_head.fc.*`` (MMAction2 ``GCNHead``). ActRec's pyskl-family
networks (``stgcnpp``, ``ctrgcn``) use the backbone's names unchanged and call the head ``fc``,
so the two renames below are all that ``network.weights`` needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["OPENMMLAB_RENAMES", "openmmlab_origin"]

# checkpoint name -> ActRec name, tried like ``network.weights.RENAMES``
OPENMMLAB_RENAMES = (
    (re.compile(r"^backbone\."), ""),  # the recognizer's backbone: its names are ours
    (re.compile(r"^cls_head\.(?:fc_cls|fc)\."), "fc."),  # pyskl fc_cls / MMAction2 fc
)
PREFIXES = ("backbone.", "cls_head.")


def openmmlab_origin(names: Iterable[str]) -> str | None:
    """ "pyskl/MMAction2 recognizer state dict" when every name is a backbone or head tensor and
    the backbone is there; else None."""
    names = list(names)
    if (
        names
        and all(n.startswith(PREFIXES) for n in names)
        and any(n.startswith("backbone.") for n in names)
    ):
        head = "fc_cls (pyskl)" if any(n.startswith("cls_head.fc_cls.") for n in names) else "fc"
        return f"pyskl/MMAction2 recognizer state dict (backbone., cls_head.{head})"
    return None
