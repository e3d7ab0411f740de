"""The documentation's links and code references stay true.

The rules, for every Markdown file in ``docs/`` and the top-level ``README.md`` (text inside fenced
``` blocks, math blocks included, is ignored):

1. **Relative links resolve.** Every ``[text](target)`` whose target is not a URL (``https:``,
   ``mailto:``, ...) and not a bare ``#anchor`` must name an existing file or folder, relative to the
   Markdown file. The ``#fragment`` of a target is ignored (anchors are not checked).

2. **A linked name is defined in the linked file.** When the link text is one name in backticks and the
   target is a ``.py`` file, that name must be defined in that file::

       [`conv2d_backward`](../scratch/conv.py)
       [`Sequential.backward`](../scratch/model.py)     # dotted: every part must be defined there

   "Defined" means a ``def`` or ``class`` at any nesting level, or a module-level assignment
   (``TOLERANCES = ...``), found with :mod:`ast`; ``name()`` counts as ``name``. A link text that is a
   file name (``[`conv.py`](../scratch/conv.py)``, ending in ``.py`` or ``.md``) is just a file link.

3. **Backticked names just before ``in`` and a link are defined in the linked file**, which is how a
   paragraph names tests without making each one a link::

       `test_conv2d_matches_torch` and `test_conv2d_matches_finite_differences` in
       [parity_tests/test_conv.py](../parity_tests/test_conv.py)

   (names separated by commas, slashes, "and" or spaces, then ``in``, then the link).

4. **Every backticked ``test_...`` name is defined in a test file the same Markdown file links to**
   (a ``.py`` file under ``parity_tests/`` or ``tests/``), so a chapter can list its tests under one
   link to their file, and renaming a test without updating the docs fails here.

5. **Every chapter exists**: the files in :data:`CHAPTERS`, each starting with a level-1 heading, and
   every ``docs/<name>.md`` that a docstring in ``scratch/`` points to.

Everything is text processing and :func:`ast.parse`; the whole module runs in well under a second.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: The chapters a reader can count on, and the components they explain (names used by scratch/).
CHAPTERS = {
    "README.md": "index and reading order",
    "01-overview.md": "the network and one training step",
    "02-layer-anatomy.md": "the shape every layer shares",
    "03-convolution.md": "convolution",
    "04-max-pooling.md": "max-pooling",
    "05-batch-normalization.md": "batch normalization",
    "06-dropout.md": "dropout",
    "07-linear-and-relu.md": "linear + ReLU",
    "08-softmax-cross-entropy.md": "softmax cross-entropy",
    "09-adam.md": "Adam",
    "10-verifying-gradients.md": "how the gradients are verified",
    "11-activations.md": "sigmoid, tanh, Leaky ReLU, softmax, log-softmax",
    "12-average-pooling.md": "average pooling",
    "13-losses.md": "the loss classes",
    "14-optimizers.md": "SGD, momentum, Nesterov, Adagrad, RMSProp",
    "15-exercises.md": "exercises: the learner's backward pass, graded",
}

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)\)")
LINK_NAME = re.compile(r"^`(?P<name>[A-Za-z_][\w.]*?)(?:\(\))?`$")
NAMES_IN_LINK = re.compile(
    r"(?P<names>(?:`[A-Za-z_][\w.]*`(?:\s*(?:,|/|\band\b)\s*|\s+))+)in\s+"
    r"\[[^\]\n]*\]\((?P<target>[^)\s#]+\.py)(?:#[^)\s]*)?\)")
BACKTICKED = re.compile(r"`([A-Za-z_][\w.]*?)(?:\(\))?`")
TEST_NAME = re.compile(r"`(test_\w+)`")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    return sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]


@functools.cache
def prose(path: Path) -> str:
    """The file's text without fenced blocks (code and ```math)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


@functools.cache
def defined_names(path: Path) -> frozenset[str]:
    """Names of every def/class (any level) and module-level assignment in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = {node.name for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def relative_links(path: Path):
    """``(text, target path, fragment-less target as written)`` for every relative link in ``path``."""
    for match in LINK.finditer(prose(path)):
        target = match["target"]
        if SCHEME.match(target) or target.startswith("#"):
            continue
        written = target.split("#", 1)[0]
        yield match["text"], (path.parent / written).resolve(), written


def missing(names, source: Path) -> list[str]:
    defined = defined_names(source)
    return [name for name in names if not all(part in defined for part in name.split("."))]


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_chapter_exists_with_a_heading(chapter):
    path = DOCS / chapter
    assert path.is_file(), f"docs/{chapter} ({CHAPTERS[chapter]}) is missing"
    first = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()), "")
    assert first.startswith("# "), f"docs/{chapter} must start with a level-1 heading, not {first!r}"


def test_docs_the_code_points_to_exist():
    pointers = {m for src in (ROOT / "scratch").glob("*.py")
                for m in re.findall(r"docs/[\w.-]+\.md", src.read_text(encoding="utf-8"))}
    assert pointers, "scratch/ docstrings name their chapters (docs/NN-name.md)"
    assert not [p for p in sorted(pointers) if not (ROOT / p).is_file()], "scratch/ points to missing docs"


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    broken = [f"[{text}]({written})" for text, target, written in relative_links(doc) if not target.exists()]
    assert not broken, f"{doc.relative_to(ROOT)}: links to missing files: {broken}"


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_linked_names_are_defined(doc):
    problems = []
    for text, target, written in relative_links(doc):
        name = LINK_NAME.match(text.strip())
        if name and name["name"].endswith((".py", ".md")):
            continue
        if name and target.suffix == ".py" and target.is_file() and missing([name["name"]], target):
            problems.append(f"[{text}]({written})")
    for match in NAMES_IN_LINK.finditer(prose(doc)):
        target = (doc.parent / match["target"]).resolve()
        if target.is_file():
            names = BACKTICKED.findall(match["names"])
            problems += [f"`{n}` in {match['target']}" for n in missing(names, target)]
    assert not problems, f"{doc.relative_to(ROOT)}: names not defined where the link points: {problems}"


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_tests_exist_in_the_linked_test_files(doc):
    test_dirs = (ROOT / "parity_tests", ROOT / "tests")
    linked = {target for _, target, _ in relative_links(doc)
              if target.suffix == ".py" and target.is_file() and target.parent in test_dirs}
    defined = set().union(*(defined_names(path) for path in linked))
    unknown = sorted({name for name in TEST_NAME.findall(prose(doc)) if name not in defined})
    assert not unknown, (f"{doc.relative_to(ROOT)} names tests that none of the test files it links to "
                         f"({sorted(p.name for p in linked)}) defines: {unknown}")


def test_the_link_rules_catch_mistakes(tmp_path):
    """The checker itself: a broken link, an undefined linked name and a misnamed test are all seen."""
    (tmp_path / "mod.py").write_text("class A:\n    def b(self): pass\nX = 1\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text("[`A.b`](mod.py) [`X`](mod.py) [`c`](mod.py) [gone](nope.md) [web](https://x.org)\n"
                   "`A`, `zz` in [mod](mod.py)\n```\n[`ignored`](nope.py)\n```\n", encoding="utf-8")
    assert [w for _, t, w in relative_links(doc) if not t.exists()] == ["nope.md"]
    linked = [LINK_NAME.match(text)["name"] for text, t, _ in relative_links(doc)
              if LINK_NAME.match(text) and t.suffix == ".py"]
    assert missing(linked, tmp_path / "mod.py") == ["c"]
    (match,) = NAMES_IN_LINK.finditer(prose(doc))
    assert missing(BACKTICKED.findall(match["names"]), tmp_path / "mod.py") == ["zz"]


def test_docs10_quotes_the_code_numbers() -> None:
    """docs/10's tolerance table and profile sizes are the ones in mirror.TOLERANCES and parity_tests/conftest.py."""
    import re

    import numpy as np
    from hypothesis import settings

    import parity_tests.conftest  # noqa: F401  (registers the profiles)
    from torch_impl.mirror import TOLERANCES

    text = (Path(__file__).resolve().parent.parent / "docs" / "10-verifying-gradients.md").read_text()

    def tex(v: float) -> str:
        mant, exp = f"{v:e}".split("e")
        m = float(mant)
        return f"$10^{{{int(exp)}}}$" if m == 1 else f"${m:g} \\cdot 10^{{{int(exp)}}}$"

    for dt, name in ((np.float64, "float64"), (np.float32, "float32")):
        tol = TOLERANCES[np.dtype(dt)]
        row = re.search(rf"^\| {name} \|.*$", text, re.M)
        assert row is not None
        assert row.group(0).rstrip().endswith(f"| {tex(tol.forward)} | {tex(tol.backward)} |"), row.group(0)
    for prof in ("ci", "thorough"):
        n = settings.get_profile(prof).max_examples
        assert f"`{prof}`" in text and re.search(rf"`{prof}`[^\n]*\n?[^\n]*{n} examples per property", text), prof
