"""Loading pretrained weights completely, or refusing with one table.

``load_pretrained(model, "r3d_18-b3b3357e.pth")`` classifies every tensor of the file and of the
model: loaded (under its own name, renamed from a reference code's name, or inflated from a 2D
kernel), copied (a model tensor the reference code shares with another one), the classifier head
(replaced for a new class count, or absent), shape-mismatched, missing (left at its
initialisation) and unexpected (in the file, not in the model). When anything but the head is
missing, unexpected or mismatched, nothing is copied and ``PretrainedLoadError`` (a ValueError,
so the scripts exit with code 2) carries the table, with the ActRec network and flags that would
load the file completely where one is found; ``partial=True`` (``--pretrained-partial``) loads
what matches instead. The table names where the file comes from: an ActRec checkpoint,
torchvision, the SRTG code's ``save_checkpoint`` files, TAO's PyTorch (Lightning) checkpoints or
state dicts. Files are always read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from network.mtnet import VARIANTS
from network.openmmlab import OPENMMLAB_RENAMES, openmmlab_origin
from network.registry import build_model, get_entry, list_models
from network.stages import stage_depths
from network.tao import is_tao_checkpoint, tao_network
from network.x3d import X3D_RENAMES
from safeio.safe_pickle import torch_load

__all__ = [
    "Checkpoint",
    "LoadReport",
    "PretrainedLoadError",
    "encrypted_model_error",
    "inflate_kernel",
    "load_pretrained",
    "read_checkpoint",
    "read_state_dict",
]

logger = logging.getLogger(__name__)

# wrapper prefixes removed from every key: DDP/DataParallel, torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# removed only when every key carries it: Lightning (TAO) modules hold the network as ``model``
LIGHTNING_PREFIX = "model."
# checkpoint dict keys under which a state_dict may sit, tried in order
STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict", "model_state")  # last: PySlowFast
# TAO's JointModel streams -> ours (the part after the prefix is then matched like a stream's)
STREAM_PREFIXES = {"model_rgb.": "rgb.", "model_of.": "flow.", "rgb.": "rgb.", "flow.": "flow."}
# renames tried one at a time for a checkpoint name (after its stream prefix) the model lacks
RENAMES = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        # torchvision / TAO 2D-style names -> video ResNet (ImageNet inflation, TAO's ResNet3d)
        (r"^conv1\.", "stem.0."),
        (r"^bn1\.", "stem.1."),
        (r"^(layer\d+\.\d+\.)conv(\d)\.", r"\1conv\2.0."),
        (r"^(layer\d+\.\d+\.)bn(\d)\.", r"\1conv\2.1."),
        # SRTG's Conv3DSimple wraps its Conv3d in an nn.Sequential: conv1.0.0 -> conv1.0
        (r"^(layer\d+\.\d+\.conv\d\.0)\.0\.", r"\1."),
        # the SRTG/MTNet reference code's recurrent cells -> ours
        (r"\.sar\.lstm\.", ".sr.recurrent."),
        (r"\.(sr_short|sr_long)\.op\.", r".\1.recurrent."),
        # TAO's classifier (2D, 3D and the streams of the joint model)
        (r"^fc_cls\.", "fc."),
    )
)
# model tensor -> checkpoint tensor that fills it when the checkpoint lacks it: SRTG's MTConv
# normalises its lateral branch with norm_long; ActRec gives the branch its own norm_short2long
COPIES = ((re.compile(r"^(.*)\.norm_short2long\.(\w+)$"), r"\1.norm_long.\2"),)
# the classifier head: replaced when the class count differs, or absent from the checkpoint
HEAD = re.compile(r"^(?:(?:rgb|flow)\.)?fcn?\.(?:weight|bias)$|^fc[12]\.(?:weight|bias)$")
# buffers whose absence changes nothing: BN step counters (old files lack them), SR gate switch
HARMLESS = re.compile(r"(?:^|\.)(?:num_batches_tracked|gate_enabled)$")
# checkpoint tensors handed to the network's own load hook (ST-GCN checks a stored adjacency)
CHECKED_BY_NETWORK = re.compile(r"(?:^|\.)A$")
# SRTG r3d kernels as the reference code names them (3×3×3, wrapped in a Sequential)
SRTG_R3D_KERNEL = re.compile(r"^layer\d+\.\d+\.conv\d\.0\.0\.weight$")
# the same kernel as torchvision (and ActRec) name it; the SRTG code never writes a 3×3×3 one here
TORCHVISION_R3D_KERNEL = re.compile(r"^layer\d+\.\d+\.conv\d\.0\.weight$")
# the entries of SRTG's save_checkpoint files (its state_dict is DataParallel's, ``module.``)
SRTG_FILE_KEYS = frozenset({"epoch", "state_dict", "optimizer"})
ENCRYPTED_SUFFIXES = (".tlt", ".etlt")
MAX_ROWS = 12  # table rows shown per status


Shape = tuple[int, ...]


def _shape(shape: Shape | None) -> str:
    return "—" if shape is None else str(list(shape))


class PretrainedLoadError(ValueError):
    """The pretrained file does not load completely; the message is the report table."""


@dataclass
class Checkpoint:
    """A pretrained file, read: flat tensors (wrapper prefixes removed) and where it comes from."""

    tensors: dict[str, torch.Tensor]
    source: str
    origin: str = "state dict"
    srtg: bool = False  # written by the SRTG code
    family: str | None = None  # ActRec checkpoints: the family of the network stored
    network: str | None = None


@dataclass
class LoadReport:
    """What ``load_pretrained`` found; ``shapes`` maps a name to (checkpoint, model) shape."""

    source: str
    origin: str = "state dict"
    target: str = "model"
    loaded: list[str] = field(default_factory=list)
    inflated: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # model name -> checkpoint name
    copied: dict[str, str] = field(default_factory=dict)  # model name -> checkpoint name
    head: list[str] = field(default_factory=list)  # model head tensors not loaded
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    harmless: list[str] = field(default_factory=list)  # missing buffers that change nothing
    shapes: dict[str, tuple[Shape | None, Shape | None]] = field(default_factory=dict)
    advice: list[str] = field(default_factory=list)
    refused: bool = False

    @property
    def complete(self) -> bool:
        """True when nothing but the head is mismatched, missing or unexpected."""
        return not (self.mismatched or self.missing or self.unexpected)

    def summary(self) -> str:
        return (
            f"{len(self.loaded)} loaded ({len(self.renamed)} renamed, {len(self.inflated)} "
            f"inflated, {len(self.copied)} copied), {len(self.head)} head replaced, "
            f"{len(self.mismatched)} shape-mismatched, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected"
        )

    def table(self) -> str:
        """Header, advice, then one row per head / mismatched / missing / unexpected tensor."""
        groups = (
            ("head replaced", self.head),
            ("shape-mismatched", self.mismatched),
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("inflated", self.inflated),
            ("copied", [f"{name} ← {self.copied[name]}" for name in self.copied]),
        )
        rows = [(status, name) for status, names in groups for name in names[:MAX_ROWS]]
        width = max([len(name) for _, name in rows] + [len("tensor")])
        lines = [
            f"pretrained weights {self.source} ({self.origin}) into {self.target}: "
            f"{self.summary()}",
            *self.advice,
            f"{'status':<17}{'tensor':<{width}}  checkpoint → model shape",
        ]
        for status, names in groups:
            for name in names[:MAX_ROWS]:
                shapes = ""
                if name in self.shapes:
                    source_shape, model_shape = self.shapes[name]
                    shapes = f"{_shape(source_shape)} → {_shape(model_shape)}"
                lines.append(f"{status:<17}{name:<{width}}  {shapes}")
            if len(names) > MAX_ROWS:
                lines.append(f"{status:<17}… and {len(names) - MAX_ROWS} more")
        if self.refused:
            lines.append(
                "refused: nothing was loaded; --pretrained-partial loads what matches anyway"
            )
        return "\n".join(lines)


# ----------------------------------------------------------------------------- reading
def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    stripped = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        stripped[key] = value
    if stripped and all(key.startswith(LIGHTNING_PREFIX) for key in stripped):
        stripped = {key[len(LIGHTNING_PREFIX) :]: value for key, value in stripped.items()}
    return stripped


def encrypted_model_error(path: Path | str) -> ValueError:
    """The one-line error for an encrypted TAO model (``.tlt``/``.etlt`` or an encrypted state)."""
    return ValueError(
        f"{path}: an encrypted TAO model; encrypted TAO models must be decrypted with TAO "
        "first (load it in TAO with its key and save the plain PyTorch checkpoint)"
    )


def _load_file(path: Path) -> Any:
    """torch.load(weights_only=True); a file that is neither a zip nor a pickle is refused."""
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    encrypted_name = path.suffix.lower() in ENCRYPTED_SUFFIXES
    if magic != b"PK\x03\x04" and magic[:1] != b"\x80":
        if encrypted_name:
            raise encrypted_model_error(path)
        raise ValueError(f"{path}: not a PyTorch checkpoint (neither a torch zip nor a pickle)")
    try:
        return torch_load(path)
    except ValueError:  # UnsafePickleError (a refused global) passes as it is
        if encrypted_name:
            raise encrypted_model_error(path) from None
        raise


def _srtg_by_names(inner: dict[str, Any], tensors: dict[str, torch.Tensor]) -> bool:
    """Names only the SRTG code writes: its recurrent cells, MTNet's shared lateral norm, or a
    3×3×3 residual kernel one Sequential deeper than torchvision's."""
    names = list(inner)
    return any(
        ".sar.lstm." in n
        or ".sr_short.op." in n
        or (".norm_long." in n and "norm_short2long" not in n)
        for n in names
    ) or any(SRTG_R3D_KERNEL.match(n) and tensors[n].shape[2:] == (3, 3, 3) for n in tensors)


def _not_srtg_by_names(tensors: dict[str, torch.Tensor]) -> bool:
    """A 3×3×3 residual kernel named as torchvision names it: the SRTG code never writes one."""
    return any(
        TORCHVISION_R3D_KERNEL.match(n) and tensors[n].shape[2:] == (3, 3, 3) for n in tensors
    )


def _srtg_file_format(raw: Any, names: list[str]) -> bool:
    """SRTG's save_checkpoint layout: epoch, optimizer and a DataParallel (``module.``) state."""
    return (
        isinstance(raw, dict)
        and set(raw) >= SRTG_FILE_KEYS
        and bool(names)
        and all(n.startswith("module.") for n in names)
    )


def _origin(raw: Any, inner: dict[str, Any], tensors: dict[str, torch.Tensor]) -> tuple[str, bool]:
    """(where the file comes from, written by the SRTG code), decided by the tensors' names and
    shapes first; the file layout only where the names fit several codes."""
    names = list(inner)
    tao_names = any(n.startswith(("fc_cls.", "model_rgb.", "model_of.")) for n in tensors)
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict) and "network" in raw:
        return f"ActRec checkpoint of {raw['network']}, epoch {raw.get('epoch')}", False
    wrapped = isinstance(raw, dict) and "state_dict" in raw
    epoch = raw.get("epoch") if wrapped else None
    if wrapped and (
        "pytorch-lightning_version" in raw or (names and all(n.startswith("model.") for n in names))
    ):
        return f"TAO PyTorch Lightning checkpoint, epoch {epoch}", False
    if tao_names:
        return "TAO state dict", False
    srtg = _srtg_by_names(inner, tensors) or (
        _srtg_file_format(raw, names) and not _not_srtg_by_names(tensors)
    )
    if srtg:
        kind = "save_checkpoint file" if _srtg_file_format(raw, names) else "state dict"
        return f"SRTG {kind}" + (f", epoch {epoch}" if wrapped else ""), True
    parallel = bool(names) and all(n.startswith("module.") for n in names)
    torchvision = "fc.weight" in tensors and (
        "stem.0.weight" in tensors or "conv1.weight" in tensors
    )
    if not torchvision and (openmmlab := openmmlab_origin(tensors)):
        return openmmlab, False
    kind = "torchvision-named state dict" if torchvision else "state dict"
    if parallel:
        kind += " of an nn.DataParallel/DDP model"
    return kind + (f", epoch {epoch}" if epoch is not None else ""), False


def read_checkpoint(source: str | PathLike | dict) -> Checkpoint:
    """A pretrained file or dict, unwrapped: tensors by name, wrapper prefixes removed, origin.

    Accepts a bare state_dict or a checkpoint dict holding one under "model" / "state_dict";
    refuses encrypted TAO models (``.tlt``/``.etlt``, or a checkpoint with an encrypted state).
    """
    label = "<state_dict>" if isinstance(source, dict) else str(source)
    raw = _load_file(Path(source)) if isinstance(source, str | PathLike) else source
    if isinstance(raw, dict) and raw.get("state_dict_encrypted"):
        raise encrypted_model_error(label)
    inner = raw
    for key in STATE_DICT_KEYS:
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            inner = raw[key]
            break
    if not isinstance(inner, dict):
        raise ValueError(f"{label}: expected a state_dict or a checkpoint dict holding one")
    tensors = _strip_prefixes({k: v for k, v in inner.items() if isinstance(v, torch.Tensor)})
    origin, srtg = _origin(raw, inner, tensors)
    actrec = isinstance(raw, dict) and "network" in raw and inner is raw.get("model")
    return Checkpoint(
        tensors=tensors,
        source=label,
        origin=origin,
        srtg=srtg,
        family=raw.get("family") if actrec else None,
        network=raw.get("network") if actrec else None,
    )


def read_state_dict(source: str | PathLike | dict) -> dict[str, torch.Tensor]:
    """A flat name → tensor dict from a file or dict, unwrapped and with wrapper prefixes removed."""
    return read_checkpoint(source).tensors


def inflate_kernel(kernel: torch.Tensor, target_shape: torch.Size) -> torch.Tensor | None:
    """(O, I, kh, kw) → (O, I, kt, kh, kw): repeat over time and divide by kt; None if no fit."""
    if kernel.ndim != 4 or len(target_shape) != 5:
        return None
    if tuple(kernel.shape) != (*target_shape[:2], *target_shape[3:]):
        return None
    frames = target_shape[2]
    return kernel.unsqueeze(2).repeat(1, 1, frames, 1, 1) / frames


# ----------------------------------------------------------------------------- matching
def _model_name(name: str, target: dict[str, Any]) -> str:
    """The model name a checkpoint name loads into: itself, or the first rename the model has."""
    prefix, rest = "", name
    for theirs, ours in STREAM_PREFIXES.items():
        if name.startswith(theirs):
            prefix, rest = ours, name[len(theirs) :]
            break
    if prefix + rest in target:
        return prefix + rest
    for pattern, replacement in RENAMES + OPENMMLAB_RENAMES + X3D_RENAMES:
        candidate = prefix + pattern.sub(replacement, rest)
        if candidate != name and candidate in target:
            return candidate
    return name


def _match(
    tensors: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    inflate: bool,
    model: nn.Module | None = None,
) -> tuple[LoadReport, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Classify every tensor; → (report, model name → new value, tensors for network hooks)."""
    report = LoadReport(source="")
    updates: dict[str, torch.Tensor] = {}
    hooks: dict[str, torch.Tensor] = {}
    for checkpoint_name, tensor in tensors.items():
        name = _model_name(checkpoint_name, target)
        if name not in target:
            if _checked_by_network(model, checkpoint_name):
                hooks[checkpoint_name] = tensor
            else:
                report.unexpected.append(checkpoint_name)
                report.shapes[checkpoint_name] = (tuple(tensor.shape), None)
            continue
        if name != checkpoint_name:
            report.renamed[name] = checkpoint_name
        wanted = target[name].shape
        report.shapes[name] = (tuple(tensor.shape), tuple(wanted))
        if tensor.shape == wanted:
            updates[name] = tensor
        elif _pointwise_as_linear(tensor, wanted):  # PySlowFast's 1×1×1 conv "linear" layers
            updates[name] = tensor.reshape(wanted)
        elif inflate and (inflated := inflate_kernel(tensor, wanted)) is not None:
            updates[name] = inflated
            report.inflated.append(name)
        else:
            (report.head if HEAD.match(name) else report.mismatched).append(name)
            report.renamed.pop(name, None)
            continue
        report.loaded.append(name)
    _fill_copies(report, tensors, target, updates)
    for name in target:
        if name in updates or name in report.head or name in report.mismatched:
            continue
        if HEAD.match(name):
            report.head.append(name)
        elif HARMLESS.search(name):
            report.harmless.append(name)
        else:
            report.missing.append(name)
            report.shapes[name] = (None, tuple(target[name].shape))
    return report, updates, hooks


def _pointwise_as_linear(tensor: torch.Tensor, wanted: torch.Size) -> bool:
    """A (O, I, 1, 1, 1) convolution kernel for an (O, I) linear weight."""
    return len(wanted) == 2 and tensor.ndim == 5 and tensor.shape == (*wanted, 1, 1, 1)


def _checked_by_network(model: nn.Module | None, name: str) -> bool:
    """A stored graph adjacency ``A`` that the module holding a graph checks when loading."""
    if model is None or not CHECKED_BY_NETWORK.search(name):
        return False
    try:
        owner = model.get_submodule(name.rpartition(".")[0])
    except AttributeError:
        return False
    return isinstance(getattr(owner, "A", None), torch.Tensor)


def _fill_copies(
    report: LoadReport,
    tensors: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    updates: dict[str, torch.Tensor],
) -> None:
    by_model_name = {model: tensors[theirs] for model, theirs in report.renamed.items()}
    for name in target:
        if name in updates:
            continue
        for pattern, replacement in COPIES:
            if not pattern.match(name):
                continue
            source_name = pattern.sub(replacement, name)
            tensor = updates.get(source_name, by_model_name.get(source_name))
            if tensor is not None and tensor.shape == target[name].shape:
                updates[name] = tensor
                report.copied[name] = report.renamed.get(source_name, source_name)
                report.loaded.append(name)


# ----------------------------------------------------------------------------- advice
def _registered(name: str) -> bool:
    return name in list_models()


def _alternatives(
    model: nn.Module, checkpoint: Checkpoint
) -> list[tuple[str, dict[str, Any], str]]:
    """(network, kwargs, flags) that may fit a file the model does not: SRTG's plain nets, MTNet
    variants with the file's blocks per stage."""
    name = getattr(model, "network_name", None)
    if not name:
        return []
    kwargs = {
        k: v for k, v in getattr(model, "network_kwargs", {}).items() if "pretrained" not in k
    }
    plain = {k: v for k, v in kwargs.items() if not k.startswith("gates")}
    found = []
    srtg_name = name if name.startswith("srtg_") else f"srtg_{name}"
    if _registered(srtg_name):
        found.append(
            (srtg_name, {**plain, "sr_blocks": False}, f"--network {srtg_name} --no-sr-blocks")
        )
        if srtg_name != name:
            found.append((srtg_name, {**plain, "sr_blocks": True}, f"--network {srtg_name}"))
    if name.startswith("mtnet_"):
        depths = stage_depths(checkpoint.tensors)
        found += [
            (f"mtnet_{variant}", kwargs, f"--network mtnet_{variant}")
            for variant, (variant_depths, _, _) in VARIANTS.items()
            if variant_depths == depths
        ]
    return [row for row in found if not (row[0] == name and row[1] == kwargs)]


def _tao_alternatives(checkpoint: Checkpoint) -> list[tuple[str, dict[str, Any], str]]:
    """The ActRec network a TAO ActionRecognitionNet file describes (read from its tensors)."""
    if not is_tao_checkpoint(checkpoint.tensors):
        return []
    try:
        name, kwargs, args = tao_network({}, checkpoint.tensors, checkpoint.source)
    except (KeyError, ValueError):
        return []
    if name == "joint":
        streams = f"--rgb-network {kwargs['rgb_network']} --of-network {kwargs['of_network']}"
        return [(name, kwargs, f"--network joint --modality joint {streams}")]
    flags = f"--network {name} --modality {args['modality']}"
    if "clip_length" in args:
        flags += f" --clip-length {args['clip_length']}"
    return [(name, kwargs, flags)]


def _loads_completely(
    name: str, kwargs: dict[str, Any], checkpoint: Checkpoint, inflate: bool
) -> bool:
    try:
        with torch.device("meta"):
            candidate = build_model(name, **kwargs)
    except (TypeError, ValueError):
        return False
    report, _, _ = _match(checkpoint.tensors, candidate.state_dict(), inflate)
    return report.complete


def _srtg_into_torchvision(model: nn.Module, checkpoint: Checkpoint) -> str | None:
    name = getattr(model, "network_name", None)
    if not checkpoint.srtg or not name or "torchvision" not in get_entry(name).tags:
        return None
    return (
        f"an SRTG checkpoint: SRTG's {name.split('_tiny')[0]} has a 3×3×3 stem max-pool (and "
        f"expansion-1 bottlenecks from 50 layers up); ActRec's {name} is torchvision's, without "
        "them, so its outputs would differ even where every name and shape matches"
    )


def _advise(model: nn.Module, checkpoint: Checkpoint, report: LoadReport, inflate: bool) -> None:
    """Fill ``report.advice`` and ``report.refused``."""
    srtg_note = _srtg_into_torchvision(model, checkpoint)
    if report.complete and srtg_note is None:
        return
    report.refused = True
    if srtg_note:
        report.advice.append(srtg_note)
    recurrent = [n for n in report.missing if ".recurrent." in n]
    if recurrent and len(recurrent) == len(report.missing) and checkpoint.srtg:
        report.advice.append(
            "the file holds no recurrent (SR) weights: SRTG's get_symbol builds the plain "
            "r3d/r2plus1d networks for the srtg_* names"
        )
    fits = [
        flags
        for name, kwargs, flags in _alternatives(model, checkpoint) + _tao_alternatives(checkpoint)
        if _loads_completely(name, kwargs, checkpoint, inflate)
    ]
    if fits:
        report.advice.append(f"it loads completely with: {' or '.join(fits)}")


def _check_family(model: nn.Module, checkpoint: Checkpoint) -> None:
    family = getattr(model, "network_family", None)
    if checkpoint.family and family and checkpoint.family != family:
        raise PretrainedLoadError(
            f"pretrained weights {checkpoint.source}: a {checkpoint.family} checkpoint "
            f"({checkpoint.network}); {getattr(model, 'network_name', 'this model')} is a "
            f"{family} network"
        )


# ----------------------------------------------------------------------------- loading
def load_pretrained(
    model: nn.Module,
    source: str | PathLike | dict,
    *,
    inflate: bool = True,
    partial: bool = False,
    log: bool = True,
) -> LoadReport:
    """Copy ``source`` into ``model`` in place when it loads completely; return the report.

    Complete: every model tensor but the classifier head (and BN step counters) is filled, by
    name, by a reference code's name (``RENAMES``), from a shared tensor (``COPIES``) or, with
    ``inflate``, from a 2D kernel repeated over time and divided by its temporal size; and every
    file tensor is used. Otherwise ``PretrainedLoadError`` is raised with the table and nothing
    is copied, unless ``partial``, which copies what matches and logs the table as a warning.
    An SRTG file never loads silently into a torchvision-compatible network.
    """
    checkpoint = read_checkpoint(source)
    _check_family(model, checkpoint)
    report, updates, hooks = _match(checkpoint.tensors, model.state_dict(), inflate, model)
    report.source, report.origin = checkpoint.source, checkpoint.origin
    report.target = getattr(model, "network_name", type(model).__name__)
    _advise(model, checkpoint, report, inflate)
    if report.refused and not partial:
        raise PretrainedLoadError(report.table())
    current = model.state_dict()
    with torch.no_grad():
        model.load_state_dict({**current, **updates, **hooks})
    if log:
        if report.refused:
            report.refused = False  # loaded anyway: the table's last line would be wrong
            logger.warning("%s\nloaded partially (--pretrained-partial)", report.table())
        else:
            logger.info("%s", report.table())
    return report
