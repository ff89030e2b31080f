"""Every ActRec command the documentation shows parses with the real parser of its script.

Sources: README.md (fenced shell blocks and inline code that starts with a command), the usage
comments of ``scripts/slurm/*.sbatch`` and the module docstrings of the entry scripts. Each
command goes through the script's own ``parse_args`` (spec files and ``key=value`` overrides
included) or ``get_args_parser()``; then the checks argparse cannot make: a command that needs
data at run time names it, and a data path a spec file supplies lies in a folder some documented
command writes (the nvpose recipe once trained on data/synth with labels from data/nvidia).

Conventions the extraction understands:
- line continuations (``\\``), ``# comments``, ``VAR=value`` prefixes, ``torchrun``,
  ``python -m torch.distributed.run`` and ``sbatch`` (the script is ``$SCRIPT`` or the job file's
  default); ``python -m module``;
- ``[--flag a|b]`` optional groups: parsed without any group and with each alternative of each
  group (``a|b`` takes ``a``); ``<placeholder>`` tokens become a plain word and ``N`` a number;
  ``--flag ...`` is a value left out; any other ``...`` means "more arguments": only the flags
  given are checked;
- a fenced block whose info string contains ``not-actrec``, or that follows a line
  ``<!-- not-actrec -->``, is skipped (for commands of other tools).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import os
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
SKIP_MARK = "not-actrec"
PYTHONS = {"python", "python3"}
ELLIPSIS = "..."
NUMBER_PLACEHOLDERS = {"N", "B", "K", "T"}  # "--short-side N": any number
# Commands that argparse accepts without an argument they cannot run without.
NEEDED_AT_RUN_TIME = {
    ("train_hmdb.py", "train"): ("data",),
    ("train_hmdb.py", "quantize"): ("data",),
    ("train_nvpose.py", "train"): ("train_data",),
    ("train_gesture.py", "train"): ("data_json",),
}
# Destinations that name input data; when a spec file (not the command line) supplies one, a
# documented command must write the folder it lies in.
INPUT_DESTS = ("data", "val_data", "splits", "train_data", "train_labels", "val_labels", "labels")
OUTPUT_FLAGS = ("--out", "--output-dir", "--output_dir", "--results_dir", "-r")


@dataclass
class Command:
    source: str  # file:line
    text: str  # as written (after joining continuations)
    script: str  # train_hmdb.py, benchmarks/loader.py or a module name (network.summary)
    argv: list[str] = field(default_factory=list)
    elided: bool = False  # "..." stood for more arguments

    def __str__(self) -> str:
        return f"{self.source}: {self.text}"


# ----------------------------------------------------------------------------- extraction
def _fenced_blocks(text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of each shell block that is not marked as not-ActRec."""
    lines = text.splitlines()
    inside, info, start, body, previous = False, "", 0, [], ""
    for number, line in enumerate(lines, 1):
        fence = re.match(r"^\s*```(.*)$", line)
        if fence and not inside:
            inside, info, start, body = True, fence.group(1).strip(), number + 1, []
            marked = SKIP_MARK in info or SKIP_MARK in previous
        elif fence and inside:
            inside = False
            language = info.split()[0].lower() if info.split() else ""
            if language in SHELL_LANGUAGES and not marked:
                yield start, body
        elif inside:
            body.append(line)
        if line.strip():
            previous = line
    assert not inside, "README.md: unclosed ``` block"


def _without_blocks(text: str) -> str:
    """``text`` with fenced blocks blanked (line numbers kept)."""
    out, inside = [], False
    for line in text.splitlines():
        if re.match(r"^\s*```", line):
            inside = not inside
            out.append("")
        else:
            out.append("" if inside else line)
    return "\n".join(out)


def _logical_lines(lines: list[str], first: int) -> Iterator[tuple[int, str]]:
    """Lines with ``\\`` continuations joined, as (line number, text)."""
    pending, start = "", first
    for number, line in enumerate(lines, first):
        if not pending:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield start, pending + stripped
        pending = ""
    if pending:
        yield start, pending


def _inline_commands(text: str, name: str) -> Iterator[tuple[str, str]]:
    plain = _without_blocks(text)
    for match in re.finditer(r"`([^`]+)`", plain):
        code = " ".join(match.group(1).split())
        if _looks_like_command(code):
            yield f"{name}:{plain.count(chr(10), 0, match.start()) + 1}", code


def _looks_like_command(code: str) -> bool:
    words = code.split()
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words = words[1:]
    return (
        bool(words)
        and (Path(words[0]).name in PYTHONS or words[0] in ("torchrun", "sbatch"))
        and len(words) > 1
    )


def readme_commands() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    found = []
    for start, lines in _fenced_blocks(text):
        for number, line in _logical_lines(lines, start):
            if _looks_like_command(line.strip()):
                found.append((f"README.md:{number}", line.strip()))
    found += list(_inline_commands(text, "README.md"))
    return found


def slurm_commands() -> list[tuple[str, str]]:
    found = []
    for job in sorted((ROOT / "scripts" / "slurm").glob("*.sbatch")):
        comments = [
            line[1:] if line.startswith("#") and not line.startswith("#SBATCH") else ""
            for line in job.read_text(encoding="utf-8").splitlines()
        ]
        for number, line in _logical_lines(comments, 1):
            words = line.strip()
            if "sbatch" in words.split()[:3] and _looks_like_command(words):
                found.append((f"{job.relative_to(ROOT)}:{number}", words))
    return found


def docstring_commands() -> list[tuple[str, str]]:
    found = []
    for script in ("train_hmdb.py", "train_nvpose.py", "train_gesture.py"):
        doc = _module(script).__doc__ or ""
        for number, line in _logical_lines(doc.splitlines(), 1):
            if _looks_like_command(line.strip()):
                found.append((f"{script} docstring:{number}", line.strip()))
    return found


# ----------------------------------------------------------------------------- commands
def _variants(text: str) -> list[str]:
    """``[...]`` groups: none of them, then each alternative of each group alone."""
    groups = list(re.finditer(r"\[([^\[\]]*)\]", text))

    def fill(chosen: dict[int, str]) -> str:
        out, last = [], 0
        for index, group in enumerate(groups):
            out += [text[last : group.start()], chosen.get(index, "")]
            last = group.end()
        return " ".join("".join([*out, text[last:]]).split())

    variants = [fill({})]
    for index, group in enumerate(groups):
        for alternative in re.split(r"\s\|\s", group.group(1)):
            variants.append(fill({index: alternative}))
    return list(dict.fromkeys(variants))


def _first_choice(token: str) -> str:
    return token.split("|")[0] if "|" in token and not token.startswith("-") else token


def _tokens(text: str) -> list[str]:
    text = text.split(" | ")[0]  # a shell pipe ends the command
    words = shlex.split(text, comments=True)
    words = [re.sub(r"<[^<>]+>", "x", _first_choice(word)) for word in words]
    return ["1" if word in NUMBER_PLACEHOLDERS else word for word in words]


def _sbatch_default(job: str) -> str:
    text = (ROOT / job).read_text(encoding="utf-8")
    match = re.search(r"SCRIPT=\$\{SCRIPT:-(\S+?)\}", text)
    assert match, f"{job}: no SCRIPT=${{SCRIPT:-...}} default"
    return match.group(1)


def _after_launcher_options(words: list[str], suffix: str) -> tuple[str, list[str]]:
    """The first word ending in ``suffix`` (skipping launcher options) and what follows it."""
    for index, word in enumerate(words):
        if word.endswith(suffix):
            return word, words[index + 1 :]
    raise AssertionError(f"no *{suffix} in {words}")


def to_command(source: str, text: str) -> Command | None:
    """The ActRec script and its arguments, or None for another program."""
    words = _tokens(text)
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    program, rest = Path(words[0]).name, words[1:]
    if program in PYTHONS and rest[:2] == ["-m", "torch.distributed.run"]:
        program, rest = "torchrun", rest[2:]
    if program in PYTHONS and rest[0] == "-m":
        script, argv = rest[1], rest[2:]
        if not (ROOT / script.split(".")[0]).is_dir():
            return None  # python -m venv, pip, ...: not ours
    elif program in PYTHONS or program == "torchrun":
        script, argv = _after_launcher_options(rest, ".py")
    elif program == "sbatch":
        job, argv = _after_launcher_options(rest, ".sbatch")
        script = env.get("SCRIPT") or _sbatch_default(job)
    else:
        return None
    # "--splits ..." : a value left out; a bare "..." : more arguments left out
    argv = ["x" if a == ELLIPSIS and i and argv[i - 1].startswith("-") else a
            for i, a in enumerate(argv)]  # fmt: skip
    elided = ELLIPSIS in argv
    return Command(source, text, script, [a for a in argv if a != ELLIPSIS], elided)


def all_commands() -> list[Command]:
    commands = []
    for source, text in readme_commands() + slurm_commands() + docstring_commands():
        for variant in _variants(text):
            command = to_command(source, variant)
            if command is not None:
                commands.append(command)
    return commands


# ----------------------------------------------------------------------------- parsing
def _module(script: str):
    if script.endswith(".py"):
        name = script[:-3].replace("/", ".")
        if not (ROOT / script).is_file():
            raise AssertionError(f"{script}: no such file in the repository")
    else:
        name = script
    return importlib.import_module(name)


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


def _parse_through_main(module, argv: list[str]) -> argparse.Namespace:
    """Scripts without ``get_args_parser``: run ``main(argv)`` until its parser returns."""
    original = argparse.ArgumentParser.parse_args

    def stop(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    argparse.ArgumentParser.parse_args = stop
    try:
        module.main(argv)
    except _Parsed as parsed:
        return parsed.namespace
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{module.__name__}.main never parsed its arguments")


def parse(command: Command) -> argparse.Namespace | None:
    """The namespace (None for an elided command, whose flags are only checked)."""
    module = _module(command.script)
    if command.elided:
        parser = module.get_args_parser()
        _, unknown = parser.parse_known_args(command.argv)
        assert not [u for u in unknown if u.startswith("-")], f"unknown flags {unknown}"
        return None
    if hasattr(module, "parse_args"):
        return module.parse_args(command.argv)
    if hasattr(module, "get_args_parser"):
        return module.get_args_parser().parse_args(command.argv)
    return _parse_through_main(module, command.argv)


def _produced_folders(commands: list[Command]) -> set[str]:
    """Folders that documented commands write (their output flags' values)."""
    folders = set()
    for command in commands:
        for flag, value in zip(command.argv, command.argv[1:]):
            if flag in OUTPUT_FLAGS:
                folders.add(str(Path(value)))
    return folders


def check_run_time(command: Command, args: argparse.Namespace, produced: set[str]) -> None:
    script = Path(command.script).name
    subcommand = getattr(args, "command", None)
    for dest in NEEDED_AT_RUN_TIME.get((script, subcommand), ()):
        assert getattr(args, dest, None), f"{script} {subcommand} needs {dest} (a flag or a spec)"
    given = " ".join(command.argv)
    for dest in INPUT_DESTS:
        value = getattr(args, dest, None)
        if not isinstance(value, str) or value in given or Path(value).is_absolute():
            continue  # typed on the command line: the reader's own data
        folder = Path(value).parent
        assert any(folder == Path(p) or Path(p) in folder.parents for p in produced), (
            f"{dest}={value} comes from a spec file, and no documented command writes {folder}"
        )


COMMANDS = all_commands()


def test_extraction_finds_the_documented_commands():
    scripts = {Path(c.script).name for c in COMMANDS}
    assert {"train_hmdb.py", "train_nvpose.py", "train_gesture.py"} <= scripts
    sources = {c.source.split(":")[0] for c in COMMANDS}
    assert {"README.md", "scripts/slurm/single_node.sbatch"} <= sources
    assert len(COMMANDS) >= 40


def test_extraction_rules():
    assert _variants("python a.py x [--m c|d --s 1] [--h 3 | --k N]") == [
        "python a.py x",
        "python a.py x --m c|d --s 1",
        "python a.py x --h 3",
        "python a.py x --k N",
    ]
    command = to_command(
        "t", "SCRIPT=train_nvpose.py sbatch --nodes 2 scripts/slurm/multi_node.sbatch train ..."
    )
    assert (command.script, command.argv, command.elided) == ("train_nvpose.py", ["train"], True)
    command = to_command(
        "t", "torchrun --nproc_per_node 4 train_hmdb.py evaluate --checkpoint <run>/best.pth  # x"
    )
    assert (command.script, command.argv) == (
        "train_hmdb.py",
        ["evaluate", "--checkpoint", "x/best.pth"],
    )
    assert to_command("t", "tensorboard --logdir runs") is None
    blocks = list(
        _fenced_blocks(
            "```bash not-actrec\npython x.py\n```\n<!-- not-actrec -->\n```\npython y.py\n```\n```bash\npython z.py \\\n  --a 1\n```\n"
        )
    )
    joined = [[(n, " ".join(line.split())) for n, line in _logical_lines(lines, start)]
              for start, lines in blocks]  # fmt: skip
    assert joined == [[(9, "python z.py --a 1")]]


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.source}" for c in COMMANDS])
def test_documented_command_parses(command, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["pytest"])
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parse(command)
    except SystemExit as exit_:
        if exit_.code == 0 and "--help" in command.argv:
            return
        pytest.fail(f"{command}\n  exits {exit_.code}: {stderr.getvalue().strip() or exit_}")
    except (ValueError, FileNotFoundError, AssertionError) as error:
        pytest.fail(f"{command}\n  {error}")
    if args is not None:
        try:
            check_run_time(command, args, _produced_folders(COMMANDS))
        except AssertionError as error:
            pytest.fail(f"{command}\n  {error}")
    assert os.getcwd() == str(ROOT)


# ----------------------------------------------------------------------------- running
SKELETON_SECTION = "## Skeleton actions"
# Appended to each documented subcommand so the chain runs in seconds: a flag on the command line
# beats the spec, so the documented paths, spec and results folders stay exactly as written.
TINY_FLAGS = {
    "synth": ["--train-per-class", "3", "--val-per-class", "2", "--min-frames", "20",
              "--max-frames", "24"],
    "convert": [],
    "train": ["--network", "st_gcn_tiny", "--end-epoch", "1", "--batch-size", "4",
              "--workers", "0", "--device", "cpu", "--no-tensorboard", "--no-plots"],
    "evaluate": ["--workers", "0", "--device", "cpu"],
    "inference": ["--workers", "0", "--device", "cpu"],
    "export": [],
}  # fmt: skip


def section_commands(title: str) -> list[Command]:
    """The commands of the fenced blocks of the README section that starts with ``title``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else len(text)]
    first_line = text.count("\n", 0, start) + 1
    found = []
    for block_start, lines in _fenced_blocks(section):
        for number, line in _logical_lines(lines, block_start):
            if _looks_like_command(line.strip()):
                command = to_command(f"README.md:{first_line + number - 1}", line.strip())
                if command is not None:
                    found.append(command)
    return found


@pytest.mark.slow
def test_the_readme_skeleton_chain_runs_as_written(tmp_path, monkeypatch):
    """synth → convert → train (the TAO spec) → evaluate → inference → export, each as the
    README writes it, in an empty folder holding only ``configs/``: a path one step writes and
    the next reads differently (results/nvpose/best.pth vs results/nvpose/train/best.pth) fails."""
    import shutil

    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    chain = [c for c in section_commands(SKELETON_SECTION) if c.argv[0] in TINY_FLAGS]
    assert [c.argv[0] for c in chain] == list(TINY_FLAGS), [str(c) for c in chain]
    module = _module("train_nvpose.py")
    for command in chain:
        code = module.main([*command.argv, *TINY_FLAGS[command.argv[0]]])
        assert code == 0, f"{command}\n  exits {code}"
    assert (tmp_path / "results" / "nvpose" / "train" / "best.pth").is_file()
    assert len((tmp_path / "actions.txt").read_text().splitlines()) > 0
    assert (tmp_path / "st_gcn.onnx").is_file()
