"""The documentation cannot rot: every code block of README.md and docs/**/*.md runs.

The rules (``docs/make_figures.py``, also at the top of docs/quickstart.md):
```python``` blocks run in page order in one namespace per page (a ```text```
block right after one is its expected output), ```bash```/```console``` blocks
run their ``refcam`` commands in a subprocess and check the exit code, blocks
in text-like languages are shown only, and a block without a language fails. Each page runs in its own scratch folder that
links the repository's top-level entries. The figures a page shows must exist
under docs/figures/, be drawn by the page's own code, and (when matplotlib is
installed, so the page drew them the same way) have the committed size.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = importlib.util.spec_from_file_location("refcam_docs_runner", os.path.join(REPO, "docs", "make_figures.py"))
docs = sys.modules.setdefault(SPEC.name, importlib.util.module_from_spec(SPEC))
SPEC.loader.exec_module(docs)

PAGES = docs.pages()
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def page_id(page: str) -> str:
    return os.path.relpath(page, REPO)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_page_code_runs_and_draws_its_figures(page: str) -> None:
    with docs.scratch_folder() as folder:
        try:
            run = docs.run_page(page, folder)
        except docs.DocsError as err:
            failure = str(err)
        else:
            failure = None
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        for name in docs.figure_names(page):
            committed = os.path.join(docs.FIGURES, name)
            assert os.path.isfile(committed), (f"{page_id(page)} shows figures/{name}, which is not committed; "
                                               "run python docs/make_figures.py")
            produced = os.path.join(folder, name)
            if not os.path.isfile(produced):
                assert run.skipped, f"{page_id(page)} shows figures/{name} but its code did not write {name}"
                continue  # drawn by a block that needs a module this machine lacks
            if HAS_MATPLOTLIB:
                assert docs.png_size(produced) == docs.png_size(committed), (
                    f"figures/{name} is {docs.png_size(committed)} but {page_id(page)} now draws "
                    f"{docs.png_size(produced)}; run python docs/make_figures.py")


def test_every_committed_figure_is_shown_by_a_page() -> None:
    shown = {name for page in PAGES for name in docs.figure_names(page)}
    committed = {name for name in os.listdir(docs.FIGURES) if name.endswith(".png")}
    assert committed - shown == set(), "figures no page shows (delete them or show them)"
    for name in committed:
        width, height = docs.png_size(os.path.join(docs.FIGURES, name))
        assert width > 100 and height > 100


def test_the_runner_checks_languages_exit_codes_and_requirements(tmp_path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nvalue = 41\n```\n\n"
                    "```python\n# requires: a_module_nobody_has\nraise SystemExit\n```\n\n"
                    "```python\nassert value + 1 == 42\n```\n\n"
                    "```bash\npip install x && refcam info missing.h5   # exit code 2\npython -m pytest\n```\n\n"
                    "```text\nnot run\n```\n")
    run = docs.run_page(str(page), str(tmp_path))
    assert len(run.ran) == 3 and len(run.skipped) == 1

    page.write_text("```\nprint('no language')\n```\n")
    with pytest.raises(docs.DocsError, match="has no language"):
        docs.run_page(str(page), str(tmp_path))
    page.write_text("```bash\nrefcam info missing.h5\n```\n")
    with pytest.raises(docs.DocsError, match="exited with 2, not 0"):
        docs.run_page(str(page), str(tmp_path))
    page.write_text("```python\n\n1 / 0\n```\n")
    with pytest.raises(docs.DocsError, match="page.md:3: the python block raised ZeroDivisionError"):
        docs.run_page(str(page), str(tmp_path))
    in_a_list = "- a list item\n\n   ```python\n   print('  indented  ')\n   ```\n\n   ```text\n     indented\n   ```\n"
    page.write_text(in_a_list)                                   # the fence's indentation is not the output's
    assert len(docs.run_page(str(page), str(tmp_path)).ran) == 1
    page.write_text(in_a_list.replace("     indented", "    indented"))
    with pytest.raises(docs.DocsError, match="printed"):
        docs.run_page(str(page), str(tmp_path))


def test_api_reference_names_every_public_function() -> None:
    import importlib

    with open(os.path.join(REPO, "docs", "api.md"), encoding="utf-8") as f:
        text = f.read()
    missing = []
    for name in ("refcam", "refcam.viz", "refcam.golden", "refcam.compare", "refcam.testing", "refcam.data",
                 "refcam.dataset"):
        module = importlib.import_module(name)          # refcam.compare the module, not the function
        public = getattr(module, "__all__", None) or [
            member for member, value in vars(module).items()
            if not member.startswith("_") and callable(value) and getattr(value, "__module__", None) == name]
        missing.extend(f"{name}.{member}" for member in public if f"`{name}.{member}" not in text)
    assert missing == [], "docs/api.md does not describe these"
