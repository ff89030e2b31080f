"""Spec files (TAO YAML or JSON) and ``key=value`` overrides mapped onto argparse.

Precedence: command line > spec file (with its overrides) > parser defaults. The spec values
become parser defaults before the final parse, so any flag given on the command line wins::

    spec_map = {"train_config.optim.lr": "lr_base", "dataset_config.batch_size": "batch_size"}
    args = resolve_args(parser, ["train", "-e", "spec.yaml", "train_config.optim.lr=0.01"], spec_map)

A ``spec_map`` value is an argparse dest, or ``(dest, convert)`` where ``convert(value)`` turns a
spec value into the flag's value (e.g. a TAO scheduler name into ``--lr-schedule``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "load_spec",
    "parse_override",
    "resolve_args",
    "write_resolved_args",
]

log = logging.getLogger(__name__)

SpecTarget = str | tuple[str, Callable[[Any], Any]]
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=")


def load_spec(path: str | Path) -> dict[str, Any]:
    """A YAML (``safe_load``) or JSON spec as a dict; bad files raise one clear ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: spec file not found")
    text = path.read_text(encoding="utf-8")
    try:
        spec = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
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
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key, value


def resolve_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    spec_map: Mapping[str, SpecTarget] | None = None,
) -> argparse.Namespace:
    """Parse ``argv`` with the spec (``-e``) and ``key=value`` overrides as defaults.

    Override keys may be dotted spec keys (``model_config.rgb_seq_length=32``), top-level keys
    named in ``spec_map`` (``batch_size=4`` in TAO style) or argparse dests. The merged spec (after
    overrides) is stored in ``args.spec`` (``None`` without a spec) for family-specific sections.
    """
    spec_map = dict(spec_map or {})
    argv = list(sys.argv[1:] if argv is None else argv)
    cli, overrides = _split_overrides(parser, argv)
    known, _ = parser.parse_known_args(cli)
    spec_path = getattr(known, "experiment_spec", None)
    spec = load_spec(spec_path) if spec_path else {}
    source = str(spec_path) if spec_path else "command line"
    dests = _all_dests(parser)
    direct: dict[str, Any] = {}
    for key, value in overrides:
        if _is_spec_key(key, spec_map, spec):
            _set_nested(spec, key, value)
        elif key in dests:
            direct[key] = value
        else:
            raise SystemExit(f"error: unknown override {key!r}: not a key of {source} nor a flag")
    defaults = _map_spec(spec, spec_map, source)
    defaults.update(direct)
    _set_defaults(parser, _typed_defaults(parser, defaults, source))
    args = parser.parse_args(cli)
    args.spec = spec if (spec_path or overrides) else None
    return args


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


def _is_spec_key(key: str, spec_map: Mapping[str, SpecTarget], spec: Mapping[str, Any]) -> bool:
    return any(key == mapped or key.startswith(mapped + ".") for mapped in spec_map) or (
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


def _leaves(spec: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in spec.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, dotted + ".")
        else:
            yield dotted


def _map_spec(
    spec: Mapping[str, Any], spec_map: Mapping[str, SpecTarget], source: str
) -> dict[str, Any]:
    """Spec values keyed by argparse dest; unmapped spec entries are reported once."""
    defaults: dict[str, Any] = {}
    for key, target in spec_map.items():
        value = _get_nested(spec, key)
        if value is _MISSING:
            continue
        dest, convert = (target, None) if isinstance(target, str) else target
        defaults[dest] = convert(value) if convert else value
    unmapped = [
        leaf
        for leaf in _leaves(spec)
        if not any(leaf == key or leaf.startswith(key + ".") for key in spec_map)
    ]
    if unmapped:
        log.info("%s: spec entries not used by this command: %s", source, ", ".join(unmapped))
    return defaults


def _typed_defaults(
    parser: argparse.ArgumentParser, defaults: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """Apply each flag's ``type`` (YAML reads ``1e-3`` as a string) and check ``choices``."""
    actions = _all_dests(parser)
    typed: dict[str, Any] = {}
    for dest, value in defaults.items():
        action = actions.get(dest)
        if action is None:
            raise SystemExit(f"error: {source}: spec maps to unknown argument {dest!r}")
        typed[dest] = _convert(action, value, source)
    return typed


def _convert(action: argparse.Action, value: Any, source: str) -> Any:
    # nargs=0 (--x/--no-x flags) takes a single value, like nargs=None
    many = action.nargs in ("*", "+") or (isinstance(action.nargs, int) and action.nargs > 0)
    if many and not isinstance(value, list | tuple):
        value = [value]
    try:
        if many:
            value = [action.type(v) if action.type else v for v in value]
        elif action.type and value is not None and not isinstance(value, bool):
            value = action.type(value)
    except (TypeError, ValueError):
        raise SystemExit(f"error: {source}: bad value {value!r} for {action.dest}") from None
    checked = value if many else [value]
    if action.choices is not None and any(v not in action.choices for v in checked):
        raise SystemExit(
            f"error: {source}: {value!r} is not one of {sorted(action.choices)} for {action.dest}"
        )
    return value


def _set_defaults(parser: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    """Set each default on every (sub-)parser that defines the dest."""
    for each in _parsers(parser):
        own = {a.dest for a in each._actions}
        each.set_defaults(**{k: v for k, v in defaults.items() if k in own})
