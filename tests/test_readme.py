"""README is what a newcomer runs: its set-up and test commands are what CI runs, and every
command, option and install line it names exists."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from anonymixer.cli import build_parser
from anonymixer.face.detect import DLIB_INSTALL

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = {path.relative_to(REPO).as_posix(): path.read_text(encoding="utf-8") for path in (REPO / "docs").glob("*.md")}


def code_blocks(text, marker=None):
    """The fenced code blocks of Markdown ``text`` (fences are lines starting with three
    backticks); with ``marker``, only the block right after ``<!-- ci:MARKER ... -->``."""
    blocks, current, previous = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, marked = [], previous.startswith(f"<!-- ci:{marker}")
            else:
                if marker is None or marked:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
        elif line.strip():
            previous = line.strip()
    return blocks


def marked_block(marker):
    """The commands of the block marked ``<!-- ci:MARKER -->`` in README, one per ``&&``."""
    blocks = code_blocks(README, marker)
    assert len(blocks) == 1, f"README needs one block marked ci:{marker}, has {len(blocks)}"
    return commands(blocks[0])


def commands(text):
    """Shell commands of a script or a code block: continuation lines joined, split at ``&&``,
    comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            found += [" ".join(part.split()) for part in line.split("&&") if part.strip()]
    return found


def ci_commands():
    boilerplate = ("set -euo pipefail", 'cd "$(dirname "$0")/.."')
    return [c for c in commands((REPO / ".ci" / "run").read_text()) if c not in boilerplate]


def test_ci_runs_readmes_set_up_command_then_its_test_command_in_that_order():
    wanted = marked_block("setup") + marked_block("test")
    assert ci_commands()[-len(wanted):] == wanted


def test_what_ci_runs_before_them_installs_only_system_packages_that_readme_names():
    wanted = marked_block("setup") + marked_block("test")
    before = ci_commands()[:-len(wanted)]
    shell = ("if ", "then", "fi", "apt-get update")
    packages = [word for command in before if not command.startswith(shell) and "apt-get install" in command
                for word in command.split("apt-get install", 1)[1].split() if word[0] not in "->"]
    assert all(command.startswith(shell) or "apt-get install" in command for command in before), before
    named = " ".join(line for line in README.splitlines() if "apt-get install" in line)
    assert all(package in named.split() or f"{package}`" in named or f"{package})" in named
                            for package in packages), (packages, named)


def anonymixer_invocations(text):
    """Every ``anonymixer COMMAND ...`` that text names, in code blocks and inline code."""
    found = []
    for block in code_blocks(text):
        found += [c for c in commands(block) if c.startswith("anonymixer ")]
    for span in re.findall(r"`(anonymixer [^`]+)`", text):
        found.append(" ".join(span.split()))
    return found


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


@pytest.mark.parametrize("name", ["README.md", *sorted(DOCS)])
def test_every_command_and_option_the_documentation_names_exists(name):
    text = README if name == "README.md" else DOCS[name]
    parser, choices = subparsers()
    top_options = {s for a in parser._actions for s in a.option_strings}
    unknown = []
    for invocation in anonymixer_invocations(text):
        words = re.sub(r"[\[\]|/]", " ", invocation).split()
        command = words[1]
        if command in ("...", "COMMAND", "<command>"):   # a placeholder: any command
            continue
        if command.startswith("-"):
            unknown += [w for w in words[1:] if w.startswith("--") and w.split("=")[0] not in top_options]
            continue
        if command not in choices:
            unknown.append(f"{command} (in `{invocation}`)")
            continue
        sub, rest = choices[command], words[2:]
        nested = next((a for a in sub._actions if isinstance(a, argparse._SubParsersAction)), None)
        if nested is not None and rest and rest[0] in nested.choices:   # anonymixer terminal enrol ...
            command, sub, rest = f"{command} {rest[0]}", nested.choices[rest[0]], rest[1:]
        options = {s for a in sub._actions for s in a.option_strings}
        unknown += [f"{command} {w.split('=')[0]}" for w in rest
                    if w.startswith("--") and w.split("=")[0].rstrip(",.;:)") not in options]
    assert not unknown, f"{name} names what does not exist: {unknown}"


def test_every_dlib_install_line_is_the_one_the_code_prints():
    lines = [line.strip() for text in (README, *DOCS.values()) for block in code_blocks(text)
             for line in commands(block) if "dlib-bin" in line]
    spans = [" ".join(s.split()) for text in (README, *DOCS.values())
             for s in re.findall(r"`(pip install [^`]*dlib-bin[^`]*)`", text)]
    assert lines + spans and all(item == DLIB_INSTALL for item in lines + spans), lines + spans


def test_readme_says_where_the_official_e4e_file_comes_from():
    assert "e4e_ffhq_encode.pt" in README and "omertov/encoder4editing" in README


def test_readme_points_at_the_design_in_the_repository_not_outside_it():
    assert "../shared" not in README and "docs/design.md" in README
    assert (REPO / "docs" / "design.md").is_file()


# Pages another engineer is writing, which pages already link to; README itself may not link to one.
PENDING_PAGES: set[str] = set()


@pytest.mark.parametrize("name", ["README.md", *sorted(DOCS)])
def test_links_lead_to_files_that_exist(name):
    text, base = (README, REPO) if name == "README.md" else (DOCS[name], REPO / "docs")
    pending = set() if name == "README.md" else PENDING_PAGES
    missing = [link for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
               if not link.startswith(("http://", "https://", "mailto:")) and not (base / link).exists()
               and link not in pending]
    assert not missing

def test_readmes_set_up_and_test_commands_are_in_its_first_screen():
    first_screen = "\n".join(README.splitlines()[:40])
    assert code_blocks(first_screen, "setup") and code_blocks(first_screen, "test")


def test_readme_is_short():
    assert len(README.splitlines()) <= 200

