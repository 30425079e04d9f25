"""The README's code runs as written: every Python block in a fresh namespace and a temporary working folder, and
every ``dic-sbi`` command line of its shell blocks is accepted by the command-line parser."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", TEXT, flags=re.S | re.M)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
SHELL = [code for lang, code in BLOCKS if lang in ("bash", "sh", "shell")]


def _first_code_line(code: str) -> str:
    return next(line for line in code.splitlines() if line.strip() and not line.startswith(("import", "from")))[:40]


@pytest.mark.parametrize("code", PYTHON, ids=[f"{i}: {_first_code_line(c)}" for i, c in enumerate(PYTHON)])
def test_readme_python_block_runs_as_written(code, tmp_path, monkeypatch):
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # blocks that write (result.write, spikes.csv, ...) write here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sbi's advice on small runs: the blocks are short on purpose
        exec(compile(code, f"{README.name} python block", "exec"), {"__name__": "__readme__"})


def test_readme_blocks_use_no_placeholder_files():
    """The Python blocks name only files they create themselves or the shipped examples."""
    assert len(PYTHON) >= 6 and "dic_sbi.data.example_recording" in TEXT
    for code in PYTHON:
        for name in re.findall(r"read_recording\(\s*\"([^\"]+)\"", code) + re.findall(r"infer\(\s*\"([^\"]+)\"", code):
            assert f'open("{name}", "w")' in code, f"{name} is read but not made in the block:\n{code}"


def _commands():
    for code in SHELL:
        for line in code.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "dic-sbi":
                yield words


@pytest.mark.parametrize("argv", list(_commands()), ids=lambda a: " ".join(a[:3]))
def test_readme_command_lines_are_accepted_by_the_parser(argv, monkeypatch):
    from dic_sbi.cli import build_parser

    monkeypatch.chdir(README.parent)  # the commands run from the repository root (tutorials/models/squid.py:HH)

    if argv[1:] == ["--version"]:
        with pytest.raises(SystemExit) as done:  # argparse prints the version and exits
            build_parser().parse_args(argv[1:])
        assert done.value.code == 0
        return
    args = build_parser().parse_args(argv[1:])  # raises on an unknown option or a bad value
    assert callable(args.func)


def test_readme_shell_blocks_make_the_files_they_use():
    """`cell.nix` in the main job's commands is the shipped example, copied first."""
    first = next(code for code in SHELL if "dic-sbi infer cell.nix" in code)
    assert "example_recording('stg'), 'cell.nix'" in first
