"""The `llie` command: help of every subcommand, the installed console script, and one-line "not available"
errors."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.enhancer_testing import error_lines, run_llie, test_models  # noqa: F401 (fixture)
from train import registry

MAIN_FLAGS = {
    "enhance": ["--output", "--model", "--preset", "--weights", "--tile", "--demo", "--format", "--rounding",
                "--quiet", "--boost"],
    "evaluate": ["--data", "--protocol", "gt-mean", "gt-ratio", "--split", "--niqe", "--niqe-params",
                 "--no-reference", "--csv", "--model", "--preset", "--weights", "--boost"],
    "export": ["--model", "--output", "--format"],
    "synthesize": ["SRC", "DST", "--seed", "--eval-fraction", "--layout", "--gamma", "--read-noise", "--skip-bad",
                   "Poisson-Gaussian"],
    "train": ["COMMAND"],
    "convert": ["MODEL"],
}


def test_top_level_help_lists_every_subcommand(capsys):
    status, stdout, _ = run_llie(capsys, "--help")
    assert status == 0
    for command in MAIN_FLAGS:
        assert command in stdout


@pytest.mark.parametrize("command", sorted(MAIN_FLAGS))
def test_subcommand_help_mentions_its_main_flags(command, capsys, test_models):
    status, stdout, _ = run_llie(capsys, command, "--help")
    assert status == 0
    for flag in MAIN_FLAGS[command]:
        assert flag in stdout, (command, flag)


def test_installed_console_script():
    script = shutil.which("llie")
    assert script is not None, "the llie console script is not installed (pip install -e .)"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0
    assert "usage: llie" in result.stdout and "enhance" in result.stdout
    # TensorFlow's native start-up notices (printed before absl logging starts) are kept off the terminal.
    assert "oneDNN" not in result.stderr and "absl::InitializeLog" not in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["enhance", "evaluate"])
def test_unknown_model_is_a_one_line_error(command, tmp_path, capsys):
    args = [tmp_path, "-o", tmp_path / "out"] if command == "enhance" else ["--data", tmp_path]
    status, stdout, stderr = run_llie(capsys, command, *args, "--model", "no-such-model")
    assert status == 1 and stdout == ""
    assert error_lines(stderr, command) == [stderr.strip()]
    assert "unknown model 'no-such-model' (known: " in stderr


def test_model_not_implemented_yet_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """A built-in entry whose package is missing (as SCI was before it landed)."""
    monkeypatch.setitem(registry._BUILTIN, "future", "train.no_such_spec")
    status, _, stderr = run_llie(capsys, "enhance", tmp_path, "-o", tmp_path / "out", "--model", "future")
    assert status == 1
    assert stderr.strip() == "llie enhance: error: model 'future' is not available yet in this version"


def test_build_failure_from_the_model_is_a_one_line_error(tmp_path, capsys, test_models):
    status, _, stderr = run_llie(capsys, "evaluate", "--data", tmp_path, "--model", "scale-test",
                                 "--weights", tmp_path / "missing.txt")
    assert status == 1 and stderr.strip() == f"llie evaluate: error: {tmp_path / 'missing.txt'}: no such weights file"
