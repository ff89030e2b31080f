"""Every entry script imports and prints its help, so docs never drift from the parser."""

import importlib
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPTS = ["train_hmdb", "train_nvpose", "train_gesture"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_runs(script: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / f"{script}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "usage" in completed.stdout.lower()


@pytest.mark.parametrize("script", SCRIPTS)
def test_parser_has_subcommands(script: str) -> None:
    module = importlib.import_module(script)
    parser = module.get_args_parser()
    help_text = parser.format_help()
    for command in ("train", "evaluate", "inference", "export", "demo"):
        assert command in help_text, f"{script} has no {command!r} subcommand"


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_missing_spec_file_is_one_line_and_exit_code_2(script: str, tmp_path, capsys) -> None:
    module = importlib.import_module(script)
    missing = tmp_path / "missing.yaml"
    assert module.main(["train", "-e", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing}: spec file not found"
