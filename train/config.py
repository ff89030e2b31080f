"""Spec files (TAO YAML or JSON) and ``key=value`` overrides mapped onto argparse.

Precedence: command line > spec file (with its overrides) > parser defaults. The spec values
become parser defaults before the final parse, so any flag given on the command line wins::

    spec_map = {"train_config.optim.lr": "lr_base", "dataset_config.batch_size": "batch_size"}
    args = resolve_args(parser, ["train", "-e", "spec.yaml", "train_config.optim.lr=0.01"], spec_map)

A ``spec_map`` value (a :data:`SpecTarget`) is one of

- an argparse dest: the spec value becomes that flag's default (typed and checked like the flag);
- ``(dest, convert)``: ``convert(value)`` gives the flag's value (e.g. ``[224, 224]`` → 224); it
  raises ValueError/TypeError for a bad value;
- ``(dest, {spec value: flag value})``: a closed set of spec values (``MultiStep`` →
  ``multistep``); any other value is refused with the allowed ones;
- :class:`Ignored`: a documented key that ActRec accepts and does not use, with the reason.

``spec_map`` may also be a function of the spec (for layouts whose keys mean different things, e.g.
TAO 3/4 and TAO 5 ``results_dir``). ``known_keys`` lists the keys other subcommands use, which are
silently left alone. Every other key is unknown: :func:`log_spec_notes` warns about it once logging
is set up, and ``--strict-spec`` refuses it. Every bad spec value is one :class:`SpecError` line
naming the file, the key and the allowed values (exit code 2 through ``train.runner``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Ignored",
    "SpecError",
    "add_spec_arguments",
    "command_of",
    "load_spec",
    "log_spec_notes",
    "parse_override",
    "resolve_args",
    "spec_table",
    "square_shape",
    "write_resolved_args",
]

log = logging.getLogger(__name__)

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=")
KEY_NOTE = "-k/--key is accepted for TAO compatibility and ignored: ActRec files are not encrypted"


class SpecError(ValueError):
    """A spec key or value ActRec cannot use; the message is one line naming file and key."""


@dataclass(frozen=True)
class Ignored:
    """A documented spec key that is accepted and not used; ``reason`` says why."""

    reason: str


SpecTarget = str | tuple[str, Callable[[Any], Any] | Mapping[Any, Any]] | Ignored
SpecMap = Mapping[str, SpecTarget]


def add_spec_arguments(group: argparse._ActionsContainer) -> None:
    """``-e`` (TAO's ``--experiment_spec_file`` names too), ``-k`` and ``--strict-spec``."""
    group.add_argument(
        "-e",
        "--experiment-spec",
        "--experiment_spec_file",
        "--experiment_spec",
        dest="experiment_spec",
        default=None,
        help="YAML/JSON spec (TAO 3/4 or TAO 5 layout); key=value arguments override its entries",
    )
    group.add_argument(
        "-k", "--key", default=None, help="TAO's encryption key: accepted and ignored (a note)"
    )
    group.add_argument(
        "--strict-spec",
        action="store_true",
        help="refuse spec keys ActRec does not know (default: a warning naming them)",
    )


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``): TAO specs use none, and nine levels
    of them (a "billion laughs") expand a few hundred bytes into gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                "allowed in specs"
            )
        return super().compose_node(parent, index)


def _yaml(text: str) -> Any:
    """``yaml.safe_load`` without aliases."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)


def load_spec(path: str | Path) -> dict[str, Any]:
    """A YAML (``safe_load``, aliases refused) or JSON spec as a dict; bad files raise one clear
    ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: spec file not found")
    text = path.read_text(encoding="utf-8")
    try:
        spec = json.loads(text) if path.suffix.lower() == ".json" else _yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        detail = str(error).splitlines()[0]
        raise ValueError(f"{path}: not a valid spec file ({detail})") from None
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a spec must be a mapping, got {type(spec).__name__}")
    return spec


def parse_override(token: str) -> tuple[str, Any]:
    """``"a.b=32"`` -> ``("a.b", 32)``; the value is typed as YAML (ints, floats, lists, bools)."""
    key, _, text = token.partition("=")
    try:
        value = _yaml(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key, value


def command_of(argv: Sequence[str]) -> str:
    """The subcommand of a family script's ``argv`` (its first token), or ``""``."""
    return next((token for token in argv if not token.startswith("-")), "")


def square_shape(value: Any) -> int:
    """TAO's ``output_shape`` ``[height, width]`` → the crop size; ActRec crops square clips."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError("expected [height, width], e.g. [224, 224]")
    height, width = (int(side) for side in value)
    if height != width or height <= 0:
        raise ValueError("expected two equal positive sizes (ActRec crops square clips)")
    return height


def resolve_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    spec_map: SpecMap | Callable[[Mapping[str, Any]], SpecMap] | None = None,
    *,
    known_keys: Iterable[str] = (),
) -> argparse.Namespace:
    """Parse ``argv`` with the spec (``-e``) and ``key=value`` overrides as defaults.

    Override keys may be dotted spec keys (``model_config.rgb_seq_length=32``), top-level keys
    named in ``spec_map`` (``batch_size=4`` in TAO style) or argparse dests. The merged spec (after
    overrides) is stored in ``args.spec`` (``None`` without a spec) for family-specific sections;
    the notes for :func:`log_spec_notes` in ``args.spec_notes``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    cli, overrides = _split_overrides(parser, argv)
    known, _ = parser.parse_known_args(cli)
    spec_path = getattr(known, "experiment_spec", None)
    spec = load_spec(spec_path) if spec_path else {}
    source = str(spec_path) if spec_path else "command line"
    mapping = _spec_map(spec_map, spec)
    everything = set(mapping) | set(known_keys)
    top_level, direct = _apply_overrides(parser, spec, overrides, everything, source)
    mapping = _spec_map(spec_map, spec)
    flat = {**_flatten(spec, everything), **top_level}
    given = {key for key, _ in overrides}
    winners = {key for key in flat if any(key == g or key.startswith(g + ".") for g in given)}
    values, origins, notes, unknown = _map_spec(flat, mapping, everything, source, winners)
    if unknown and getattr(known, "strict_spec", False):
        raise SpecError(f"{source}: unknown spec keys (--strict-spec): {'; '.join(unknown)}")
    defaults = _typed_defaults(parser, values, origins, source)
    defaults.update(_typed_defaults(parser, direct, {k: k for k in direct}, source))
    _set_defaults(parser, defaults)
    args = parser.parse_args(cli)
    args.spec = spec if (spec_path or overrides) else None
    args.spec_notes = [(logging.WARNING, f"{source}: unknown spec key {key}") for key in unknown]
    args.spec_notes += [(logging.INFO, f"{source}: {note}") for note in notes]
    if getattr(args, "key", None) is not None:
        args.spec_notes.append((logging.INFO, KEY_NOTE))
    return args


def log_spec_notes(args: argparse.Namespace) -> None:
    """Log (once logging is set up) the spec's unknown keys as warnings and the accepted-and-
    ignored ones as notes; the notes leave ``args`` (they are not run arguments)."""
    notes = vars(args).pop("spec_notes", None) or []
    if int(os.environ.get("RANK", "0")) != 0:  # every rank reads the same spec: say it once
        return
    for level, message in notes:
        log.log(level, "%s", message)


def write_resolved_args(args: argparse.Namespace, run_dir: str | Path) -> Path:
    """Write the resolved arguments to ``<run_dir>/args.yaml`` and return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "args.yaml"
    path.write_text(yaml.safe_dump(plain_args(args), sort_keys=True), encoding="utf-8")
    return path


def plain_args(args: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as plain YAML/weights_only-safe values (paths as strings, callables dropped)."""
    items = vars(args).items() if isinstance(args, argparse.Namespace) else args.items()
    return {key: _plain(value) for key, value in items if not callable(value)}


def spec_table(spec_map: SpecMap) -> list[tuple[str, str]]:
    """(key, handling) rows for the docs: ``--flag``, ``--flag (values)`` or ``ignored: why``."""
    rows = []
    for key, target in spec_map.items():
        if isinstance(target, Ignored):
            rows.append((key, f"ignored: {target.reason}"))
            continue
        dest, convert = (target, None) if isinstance(target, str) else target
        flag = "--" + dest.replace("_", "-")
        if isinstance(convert, Mapping):
            flag += " (" + ", ".join(f"{k} → {v}" for k, v in convert.items()) + ")"
        rows.append((key, flag))
    return rows


# ----------------------------------------------------------------------------- internals
def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _spec_map(
    spec_map: SpecMap | Callable[[Mapping[str, Any]], SpecMap] | None, spec: Mapping[str, Any]
) -> dict[str, SpecTarget]:
    return dict((spec_map(spec) if callable(spec_map) else spec_map) or {})


def _split_overrides(
    parser: argparse.ArgumentParser, argv: list[str]
) -> tuple[list[str], list[tuple[str, Any]]]:
    """Separate ``key=value`` tokens from the flags; a flag's own value is never taken."""
    takes_value = _options_taking_values(parser)
    cli: list[str] = []
    overrides: list[tuple[str, Any]] = []
    for position, token in enumerate(argv):
        previous = argv[position - 1] if position else ""
        if _OVERRIDE.match(token) and previous not in takes_value:
            overrides.append(parse_override(token))
        else:
            cli.append(token)
    return cli, overrides


def _apply_overrides(
    parser: argparse.ArgumentParser,
    spec: dict[str, Any],
    overrides: list[tuple[str, Any]],
    keys: set[str],
    source: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge spec-key overrides into ``spec``; return the top-level scalars that would replace a
    section (TAO 3/4 ``model=x.tlt`` beside a TAO 5 ``model:`` section) and the by-dest values."""
    dests = _all_dests(parser)
    top_level: dict[str, Any] = {}
    direct: dict[str, Any] = {}
    for key, value in overrides:
        if _is_spec_key(key, keys, spec):
            if isinstance(_get_nested(spec, key), Mapping) and not isinstance(value, Mapping):
                top_level[key] = value
            else:
                _set_nested(spec, key, value)
        elif key in dests:
            direct[key] = value
        else:
            hint = _did_you_mean(key, keys | set(dests))
            raise SpecError(f"unknown override {key!r}: not a key of {source} nor a flag{hint}")
    return top_level, direct


def _parsers(parser: argparse.ArgumentParser) -> Iterable[argparse.ArgumentParser]:
    """The parser and all its (nested) sub-command parsers."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def _options_taking_values(parser: argparse.ArgumentParser) -> set[str]:
    return {
        option
        for each in _parsers(parser)
        for action in each._actions
        if action.nargs != 0
        for option in action.option_strings
    }


def _all_dests(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        action.dest: action
        for each in _parsers(parser)
        for action in each._actions
        if action.dest is not argparse.SUPPRESS and action.dest != "help"
    }


def _is_spec_key(key: str, keys: Iterable[str], spec: Mapping[str, Any]) -> bool:
    return any(key == mapped or key.startswith(mapped + ".") for mapped in keys) or (
        _get_nested(spec, key) is not _MISSING
    )


_MISSING = object()


def _get_nested(spec: Mapping[str, Any], key: str) -> Any:
    node: Any = spec
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set_nested(spec: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = spec
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _flatten(spec: Mapping[str, Any], keys: set[str], prefix: str = "") -> dict[str, Any]:
    """Dotted key → value; a mapping stays whole where it is a key's value (``label_map``) and
    not also a section (TAO 5 ``model:`` beside TAO 3/4's ``model=x.tlt``)."""
    flat: dict[str, Any] = {}
    for name, value in spec.items():
        dotted = f"{prefix}{name}"
        whole = dotted in keys and not any(key.startswith(dotted + ".") for key in keys)
        if isinstance(value, Mapping) and value and not whole:
            flat.update(_flatten(value, keys, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _map_spec(
    flat: Mapping[str, Any],
    spec_map: Mapping[str, SpecTarget],
    keys: set[str],
    source: str,
    overridden: set[str],
) -> tuple[dict[str, Any], dict[str, str], list[str], list[str]]:
    """(values by dest, the spec key of each dest, ignored-key notes, unknown keys with hints).

    Two keys giving one flag different values are refused, unless one is a ``key=value``
    override (``overridden``): it wins."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    notes: list[str] = []
    unknown: dict[str, None] = {}
    for key, value in flat.items():
        target = spec_map.get(key)
        if isinstance(target, Ignored):
            notes.append(f"{key} is accepted and ignored: {target.reason}")
        elif target is not None and value is not None:
            dest, value = _target_value(f"{source}: {key}", target, value)
            if dest in values and values[dest] != value:
                if origins[dest] in overridden:
                    continue
                if key in overridden:
                    values[dest], origins[dest] = value, key
                    continue
                raise SpecError(
                    f"{source}: {origins[dest]} ({values[dest]!r}) and {key} ({value!r}) "
                    f"disagree; both set --{dest.replace('_', '-')}"
                )
            values[dest], origins[dest] = value, key
        elif target is None and key not in keys and (part := _unknown_part(key, keys)):
            unknown[part] = None
    return values, origins, notes, [k + _did_you_mean(k, _at_depth(k, keys)) for k in unknown]


def _target_value(where: str, target: SpecTarget, value: Any) -> tuple[str, Any]:
    if isinstance(target, str):
        return target, value
    dest, convert = target
    if isinstance(convert, Mapping):
        if isinstance(value, str) and value in convert:
            return dest, convert[value]
        allowed = ", ".join(str(name) for name in convert)
        raise SpecError(f"{where}: {value!r} is not one of {allowed}")
    try:
        return dest, convert(value)
    except (TypeError, ValueError, KeyError, IndexError) as error:
        raise SpecError(f"{where}: bad value {value!r} ({error})") from None


def _unknown_part(key: str, keys: set[str]) -> str | None:
    """The shortest prefix of ``key`` that no known key starts with (the misspelt section);
    ``None`` for a known section left empty (``evaluate:``)."""
    parts = key.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if not any(k == prefix or k.startswith(prefix + ".") for k in keys):
            return prefix
    return None


def _at_depth(key: str, keys: set[str]) -> set[str]:
    depth = key.count(".") + 1
    return {".".join(k.split(".")[:depth]) for k in keys}


def _did_you_mean(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _typed_defaults(
    parser: argparse.ArgumentParser,
    defaults: Mapping[str, Any],
    origins: Mapping[str, str],
    source: str,
) -> dict[str, Any]:
    """Apply each flag's ``type`` (YAML reads ``1e-3`` as a string) and check ``choices``."""
    actions = _all_dests(parser)
    typed: dict[str, Any] = {}
    for dest, value in defaults.items():
        action = actions.get(dest)
        key = origins.get(dest, dest)
        if action is None:
            raise SpecError(f"{source}: {key} maps to unknown argument {dest!r}")
        typed[dest] = _convert(action, value, f"{source}: {key}")
    return typed


def _convert(action: argparse.Action, value: Any, where: str) -> Any:
    # nargs=0 (--x/--no-x flags) takes a single value, like nargs=None
    many = action.nargs in ("*", "+") or (isinstance(action.nargs, int) and action.nargs > 0)
    if many and not isinstance(value, list | tuple):
        value = [value]
    try:
        if many:
            value = [action.type(v) if action.type else v for v in value]
        elif action.type and value is not None and not isinstance(value, bool):
            value = action.type(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
        flag = action.option_strings[0] if action.option_strings else action.dest
        raise SpecError(f"{where}: bad value {value!r} for {flag} ({error})") from None
    checked = value if many else [value]
    if action.choices is not None and any(v not in action.choices for v in checked):
        allowed = ", ".join(str(choice) for choice in action.choices)
        raise SpecError(f"{where}: {value!r} is not one of {allowed}")
    return value


def _set_defaults(parser: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    """Set each default on every (sub-)parser that defines the dest."""
    for each in _parsers(parser):
        own = {a.dest for a in each._actions}
        each.set_defaults(**{k: v for k, v in defaults.items() if k in own})
