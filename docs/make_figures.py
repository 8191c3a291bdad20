"""Run the documentation's code and commit the figures it draws: ``python docs/make_figures.py``.

Every figure under ``docs/figures/`` is drawn by the code blocks of the page
that shows it, so a figure is always what its page's code produces. This
script runs the code blocks of README.md and of every ``docs/**/*.md`` page in
a scratch folder, then copies each PNG a page shows (``![...](figures/NAME.png)``,
any relative path into ``docs/figures/``) from the scratch folder to
``docs/figures/NAME.png``. It stops if a page shows a figure its code did not
write. It needs matplotlib (``pip install -e ".[viz]"``).

The same functions run the pages in ``tests/test_docs.py``. The rules for code
blocks (also stated at the top of docs/quickstart.md):

* ```` ```python ```` blocks run, in page order, in one namespace per page;
  a block with a line ``# requires: torch, matplotlib`` (module names) is
  skipped when one of those modules cannot be imported; a ```` ```text ````
  block right after a python block (nothing but blank lines between) is what
  that block prints, and must match it (trailing spaces aside);
* ```` ```bash ```` / ```` ```console ```` blocks: each command that starts
  with ``refcam `` (after an optional ``$ `` prompt; commands joined by ``&&``
  are split) runs in a subprocess through :func:`refcam.cli.main` (the
  console script's entry point; one subprocess per page runs its commands in
  order) and must exit with 0, or with ``N`` when the line ends with
  ``# exit code N``; other commands (``pip``, ``python -m pytest``) and output
  lines of ```` ```console ```` blocks (no ``$ ``) are not run. ``# requires:``
  works here too;
* blocks in :data:`SHOWN_LANGUAGES` (```` ```matlab ````, ```` ```text ````,
  ```` ```json ````, ...) are shown, never run;
* a block without a language, or in another language, is an error: say what it is.

The working folder of a page is a scratch folder holding a symbolic link to
every top-level entry of the repository, so ``fixtures/...`` paths work as in
the repository root while the files a page writes stay in the scratch folder.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from typing import Iterator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(REPO, "docs", "figures")
PYTHON_LANGUAGES = ("python", "py")
SHELL_LANGUAGES = ("bash", "sh", "shell", "console")
SHOWN_LANGUAGES = ("matlab", "cpp", "c", "text", "json", "yaml", "toml", "csv")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,})(?P<info>[^`]*)$")
REQUIRES = re.compile(r"^\s*#\s*requires:\s*(?P<modules>.+)$", re.MULTILINE)
EXIT_CODE = re.compile(r"#\s*exit code\s+(?P<code>\d+)\s*$")
FIGURE_LINK = re.compile(r"!\[[^\]]*\]\((?P<target>[^)\s]+\.png)\)")
COMMAND_TIMEOUT_S = 120


@dataclass
class CodeBlock:
    """A fenced code block of a Markdown page: its language, text and first line (1-based, the fence)."""

    page: str
    line: int
    language: str
    text: str
    end: int = 0

    @property
    def where(self) -> str:
        return f"{os.path.relpath(self.page, REPO)}:{self.line}"

    def required_modules(self) -> list[str]:
        """Modules named on ``# requires:`` lines."""
        return [name.strip() for match in REQUIRES.finditer(self.text)
                for name in match.group("modules").split(",") if name.strip()]

    def missing_modules(self) -> list[str]:
        return [name for name in self.required_modules() if importlib.util.find_spec(name) is None]


@dataclass
class PageRun:
    """What running one page did: blocks run and skipped, figures written (names in the scratch folder)."""

    page: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class DocsError(Exception):
    """A code block failed, or a page breaks the code-block rules."""


# --- reading pages -------------------------------------------------------------------------------
def pages() -> list[str]:
    """README.md and every Markdown page under docs/, sorted."""
    found = [os.path.join(REPO, "README.md")]
    for folder, _, names in os.walk(os.path.join(REPO, "docs")):
        found.extend(os.path.join(folder, name) for name in names if name.endswith(".md"))
    return sorted(found)


def code_blocks(page: str) -> list[CodeBlock]:
    """The fenced code blocks of ``page`` in order (indented fences of list items included)."""
    with open(page, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, start, indent, fence, language, body = [], 0, 0, "", "", []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not fence:
            match = FENCE.match(stripped)
            if match:
                start, fence, language, body = number, match.group("fence"), match.group("info").strip(), []
                indent = len(line) - len(line.lstrip())
        elif stripped.startswith(fence) and not stripped.strip("`"):
            text = "\n".join(_without_indent(body_line, indent) for body_line in body)
            blocks.append(CodeBlock(page, start, language.split()[0].lower() if language else "", text, number))
            fence = ""
        else:
            body.append(line)
    if fence:
        raise DocsError(f"{os.path.relpath(page, REPO)}:{start}: a code block is never closed.")
    return blocks


def _without_indent(line: str, indent: int) -> str:
    """A block line without the indentation of its fence (fences inside list items are indented)."""
    return line[min(indent, len(line) - len(line.lstrip(" "))):]


def figure_names(page: str) -> list[str]:
    """Names of the PNGs under docs/figures/ that ``page`` shows."""
    with open(page, encoding="utf-8") as f:
        text = f.read()
    names = []
    for match in FIGURE_LINK.finditer(text):
        target = os.path.normpath(os.path.join(os.path.dirname(page), match.group("target")))
        if os.path.dirname(target) == FIGURES and os.path.basename(target) not in names:
            names.append(os.path.basename(target))
    return names


# --- running pages -------------------------------------------------------------------------------
@contextlib.contextmanager
def scratch_folder() -> Iterator[str]:
    """A temporary folder linking every top-level entry of the repository (not .git)."""
    with tempfile.TemporaryDirectory(prefix="refcam-docs-") as folder:
        for name in os.listdir(REPO):
            if name != ".git":
                os.symlink(os.path.join(REPO, name), os.path.join(folder, name))
        yield folder


@contextlib.contextmanager
def working_directory(folder: str) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def run_page(page: str, folder: str) -> PageRun:
    """Run the blocks of ``page`` in ``folder`` under the rules of the module docstring; raise DocsError on failure."""
    run = PageRun(page)
    namespace: dict = {"__name__": "__docs__"}
    runner = CommandRunner(folder)
    blocks = code_blocks(page)
    try:
        with working_directory(folder):
            for index, block in enumerate(blocks):
                kind = block_kind(block)
                if kind == "shown":
                    continue
                missing = block.missing_modules()
                if missing:
                    run.skipped.append(f"{block.where} (needs {', '.join(missing)})")
                    continue
                if kind == "python":
                    printed = run_python(block, namespace)
                    expected = expected_output(page, block, blocks[index + 1] if index + 1 < len(blocks) else None)
                    if expected is not None:
                        check_output(block, printed, expected)
                else:
                    run_commands(block, runner)
                run.ran.append(block.where)
    finally:
        runner.close()
    return run


def expected_output(page: str, block: CodeBlock, following: CodeBlock | None) -> str | None:
    """The text of a ```text block that follows a python block with only blank lines between, else None."""
    if following is None or following.language != "text":
        return None
    with open(page, encoding="utf-8") as f:
        between = f.read().splitlines()[block.end:following.line - 1]
    return following.text if all(not line.strip() for line in between) else None


def _normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def check_output(block: CodeBlock, printed: str, expected: str) -> None:
    """A python block's printed output must be the ```text block after it (trailing spaces ignored)."""
    if _normalised(printed) != _normalised(expected):
        raise DocsError(f"{block.where}: the python block printed\n{printed}\nbut the page shows\n{expected}")


def block_kind(block: CodeBlock) -> str:
    """``"python"``, ``"shell"`` or ``"shown"``; raises DocsError for a block without a known language."""
    if block.language in PYTHON_LANGUAGES:
        return "python"
    if block.language in SHELL_LANGUAGES:
        return "shell"
    if block.language in SHOWN_LANGUAGES:
        return "shown"
    what = f"has the language {block.language!r}" if block.language else "has no language"
    raise DocsError(f"{block.where}: the code block {what}; write ```python or ```bash (run by the tests) or "
                    f"one of {', '.join(SHOWN_LANGUAGES)} (shown only).")


def run_python(block: CodeBlock, namespace: dict) -> str:
    """Execute a python block; returns what it printed. Line numbers in tracebacks are the page's."""
    code = compile("\n" * block.line + block.text, block.page, "exec")
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)
    except Exception as err:
        lines = [frame.lineno for frame in traceback.extract_tb(err.__traceback__) if frame.filename == block.page]
        where = f"{os.path.relpath(block.page, REPO)}:{lines[-1]}" if lines else block.where
        raise DocsError(f"{where}: the python block raised {type(err).__name__}: {err}") from err
    return printed.getvalue()


def shell_commands(block: CodeBlock) -> list[tuple[list[str], int]]:
    """``(arguments after "refcam", expected exit code)`` of each refcam command of a shell block."""
    commands = []
    for line in block.text.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        elif block.language == "console":
            continue
        expected = EXIT_CODE.search(line)
        for part in _and_parts(line):
            words = shlex.split(part, comments=True)
            if words and words[0] == "refcam":
                commands.append((words[1:], int(expected.group("code")) if expected else 0))
    return commands


def _and_parts(line: str) -> list[str]:
    """The commands of a line joined by ``&&`` (outside quotes)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="&")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    parts, current = [], []
    for token in lexer:
        if token == "&&":
            parts.append(shlex.join(current))
            current = []
        else:
            current.append(token)
    parts.append(shlex.join(current))
    return [part for part in parts if part]


class CommandRunner:
    """One ``python`` subprocess per page that runs the page's ``refcam`` commands, one after the other.

    Each command goes through :func:`refcam.cli.main`, the console script's
    entry point, with its own captured output and exit code (argparse's exits
    included); one interpreter start per page instead of one per command keeps
    the documentation tests fast.
    """

    WORKER = (
        "import contextlib, io, json, sys, traceback\n"
        "from refcam.cli import main\n"
        "for line in sys.stdin:\n"
        "    out, err = io.StringIO(), io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "        try:\n"
        "            code = main(json.loads(line))\n"
        "        except SystemExit as stop:\n"
        "            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)\n"
        "        except BaseException:\n"
        "            traceback.print_exc()\n"
        "            code = -1\n"
        "    print(json.dumps([code, out.getvalue(), err.getvalue()]), file=sys.__stdout__, flush=True)\n")

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.process: subprocess.Popen | None = None

    def run(self, arguments: list[str]) -> tuple[int, str, str]:
        """``(exit code, stdout, stderr)`` of ``refcam ARGUMENTS`` run in the page's folder."""
        if self.process is None:
            self.process = subprocess.Popen([sys.executable, "-c", self.WORKER], cwd=self.folder, text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.process.stdin.write(json.dumps(arguments) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise DocsError(f"the command runner stopped while running `refcam {shlex.join(arguments)}`.")
        code, out, err = json.loads(answer)
        return code, out, err

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait(timeout=COMMAND_TIMEOUT_S)
            self.process = None


def run_commands(block: CodeBlock, runner: CommandRunner) -> None:
    """Run the refcam commands of a shell block; each must exit with its expected code."""
    for arguments, expected in shell_commands(block):
        code, out, err = runner.run(arguments)
        if code != expected:
            raise DocsError(f"{block.where}: `refcam {shlex.join(arguments)}` exited with {code}, not {expected}.\n"
                            f"stdout:\n{out}\nstderr:\n{err}")


def png_size(path: str) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR chunk; raises ValueError for a file that is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file.")
    return struct.unpack(">II", head[16:24])


# --- the script ----------------------------------------------------------------------------------
def make_figures(selected: list[str] | None = None) -> list[str]:
    """Run every page that shows figures and copy its figures into docs/figures/; returns the files written."""
    written = []
    os.makedirs(FIGURES, exist_ok=True)
    for page in pages():
        names = figure_names(page)
        if not names or (selected and os.path.basename(page) not in selected):
            continue
        with scratch_folder() as folder, contextlib.redirect_stdout(io.StringIO()):
            run = run_page(page, folder)
            if run.skipped:
                raise DocsError(f"{os.path.relpath(page, REPO)}: blocks were skipped ({'; '.join(run.skipped)}); "
                                "install what they need to draw the figures.")
            for name in names:
                produced = os.path.join(folder, name)
                if not os.path.isfile(produced):
                    raise DocsError(f"{os.path.relpath(page, REPO)} shows figures/{name}, but its code did not "
                                    f"write {name}.")
                shutil.copyfile(produced, os.path.join(FIGURES, name))
                written.append(os.path.join(FIGURES, name))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pages", nargs="*", help="page file names to redo (default: all), e.g. e1.md README.md")
    for path in make_figures(parser.parse_args().pages):
        width, height = png_size(path)
        print(f"wrote {os.path.relpath(path, REPO)} ({width} x {height})")


if __name__ == "__main__":
    main()
