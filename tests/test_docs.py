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

5. **A line anchor points at the definition.** In ``[`name`](file.py#L120)`` line 120 of the file
   defines the (last part of the) name: ``def name``, ``class name`` or ``name = ...``. After editing the
   code, ``make anchors`` (``python tests/test_docs.py``) moves every anchor to its definition's line.

6. **Every chapter exists**: the files in :data:`CHAPTERS`, each starting with a level-1 heading, and
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


ANCHOR = re.compile(r"#L(\d+)$")


def definition_line(name: str, source: Path) -> int | None:
    """The 1-based line that defines ``name``'s last part in ``source``, or None: for ``Owner.name``, the
    first definition after ``class Owner`` (else anywhere: an inherited method); for a bare name, a
    module-level one before any indented one (``run`` is the function, not some class's method)."""
    *owner, last = name.split(".")

    def pattern(word: str) -> re.Pattern:
        return re.compile(rf"^(\s*)(?:(?:async\s+)?def|class)\s+{re.escape(word)}\b|^(){re.escape(word)}\s*[:=]")

    lines = source.read_text(encoding="utf-8").splitlines()
    start = 0
    if owner:
        start = next((i for i, line in enumerate(lines) if pattern(owner[-1]).match(line)), 0)
    found = [(i + 1, match) for i in range(len(lines)) if (match := pattern(last).match(lines[i]))]
    found = [(number, match) for number, match in found if number > start] or found
    top_level = [number for number, match in found if not (match[1] or "")]
    if not owner and top_level:
        return top_level[0]
    return found[0][0] if found else None


def anchored_links(path: Path):
    """``(name, target path, line)`` for every ``[`name`](file.py#Ln)`` link in ``path``."""
    for match in LINK.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):   # fresh: fix_anchors writes
        name, anchor = LINK_NAME.match(match["text"].strip()), ANCHOR.search(match["target"])
        if name and anchor and match["target"].split("#", 1)[0].endswith(".py"):
            yield name["name"], (path.parent / match["target"].split("#", 1)[0]).resolve(), int(anchor[1])


def fix_anchors(path: Path) -> bool:
    """Give every ``[`name`](file.py)`` link in ``path`` the anchor of ``name``'s definition (added, or
    moved to the current line). Returns whether the file changed."""
    text = path.read_text(encoding="utf-8")

    def anchored(match: re.Match) -> str:
        name, target = LINK_NAME.match(match["text"].strip()), match["target"]
        file = target.split("#", 1)[0]
        if not name or not file.endswith(".py") or ("#" in target and not ANCHOR.search(target)):
            return match[0]
        source = (path.parent / file).resolve()
        line = definition_line(name["name"], source) if source.is_file() else None
        return match[0] if line is None else f"[{match['text']}]({file}#L{line})"

    fenced = [m.span() for m in FENCE.finditer(text)]
    pieces, start = [], 0
    for a, b in fenced + [(len(text), len(text))]:
        pieces.append(LINK.sub(anchored, text[start:a]))
        pieces.append(text[a:b])
        start = b
    new = "".join(pieces)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


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


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_line_anchors_point_at_the_definition(doc):
    wrong = [f"[`{name}`]({target.name}#L{line}): defined at line {definition_line(name, target)}"
             for name, target, line in anchored_links(doc)
             if target.is_file() and definition_line(name, target) != line]
    assert not wrong, f"{doc.relative_to(ROOT)}: stale line anchors (run `make anchors`): {wrong}"


def test_fix_anchors_adds_and_moves_anchors(tmp_path):
    (tmp_path / "mod.py").write_text("X = 1\n\n\nclass A:\n    def b(self): pass\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text("[`A.b`](mod.py#L1) [`X`](mod.py) [`gone`](mod.py) [file](mod.py)\n```\n[`X`](mod.py)\n```\n",
                   encoding="utf-8")
    assert [line for _, _, line in anchored_links(doc)] == [1]
    assert fix_anchors(doc)
    assert doc.read_text(encoding="utf-8") == (
        "[`A.b`](mod.py#L5) [`X`](mod.py#L1) [`gone`](mod.py) [file](mod.py)\n```\n[`X`](mod.py)\n```\n")
    assert [(name, line) for name, _, line in anchored_links(doc)] == [("A.b", 5), ("X", 1)]
    assert not fix_anchors(doc)


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


# ---- Numbers the docs quote from the code ----------------------------------------------------------------


def latex_number(x: float) -> str:
    """``1e-11`` -> ``$10^{-11}$``, ``3e-05`` -> ``$3 \\cdot 10^{-5}$``: how the docs write a tolerance."""
    mantissa, exponent = f"{x:e}".split("e")
    digits = mantissa.rstrip("0").rstrip(".")
    power = f"10^{{{int(exponent)}}}"
    return f"${power}$" if digits == "1" else f"${digits} \\cdot {power}$"


def test_latex_number():
    assert [latex_number(x) for x in (1e-11, 3e-5, 2.5e-3, 1e4)] == [
        "$10^{-11}$", "$3 \\cdot 10^{-5}$", "$2.5 \\cdot 10^{-3}$", "$10^{4}$"]


def test_tolerance_table_matches_the_code():
    """docs/10's table of forward/backward tolerances is ``TOLERANCES`` of torch_impl/mirror.py."""
    import numpy as np

    from torch_impl.mirror import TOLERANCES

    text = (DOCS / "10-verifying-gradients.md").read_text(encoding="utf-8")
    for dtype, tol in TOLERANCES.items():
        row = re.search(rf"^\| {np.dtype(dtype).name} \|[^|\n]*\|(?P<fwd>[^|\n]*)\|(?P<bwd>[^|\n]*)\|$", text, re.M)
        assert row, f"docs/10 has no tolerance row for {np.dtype(dtype).name}"
        assert (row["fwd"].strip(), row["bwd"].strip()) == (latex_number(tol.forward), latex_number(tol.backward))


def profile_examples() -> dict[str, int]:
    """``max_examples`` of each hypothesis profile registered in parity_tests/conftest.py (read with ast,
    so that loading the profiles does not change this session's hypothesis settings)."""
    tree = ast.parse((ROOT / "parity_tests" / "conftest.py").read_text(encoding="utf-8"))
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "register_profile":
            keywords = {k.arg: k.value for k in node.keywords}
            found[ast.literal_eval(node.args[0])] = ast.literal_eval(keywords["max_examples"])
    return found


def test_profile_sizes_match_the_code():
    """The example counts docs/10 and parity_tests/conftest.py's docstring quote are the registered ones."""
    from parity_tests.parity import whole_network_examples

    profiles = profile_examples()
    assert set(profiles) == {"ci", "thorough"}
    docs = prose(DOCS / "10-verifying-gradients.md")
    conftest = (ROOT / "parity_tests" / "conftest.py").read_text(encoding="utf-8")
    for name, count in profiles.items():
        network = whole_network_examples(count)
        assert re.search(rf"`{name}`[^\n]*: {count} examples per property \({network} for the whole", docs), name
        assert re.search(rf"``{name}``[^\n]*: {count} examples per property \({network} for the whole", conftest), name


def test_every_public_scratch_function_and_class_names_its_chapter():
    """docs/README.md promises it: each public function's and class's docstring names an existing chapter."""
    problems = []
    for source in sorted((ROOT / "scratch").glob("*.py")):
        for node in ast.parse(source.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                named = re.findall(r"docs/[\w.-]+\.md", ast.get_docstring(node) or "")
                if not named or not all((ROOT / p).is_file() for p in named):
                    problems.append(f"{source.name}:{node.lineno} {node.name}")
    assert not problems, f"docstrings that name no (existing) chapter: {problems}"


if __name__ == "__main__":  # make anchors
    changed = [path.relative_to(ROOT).as_posix() for path in markdown_files() if fix_anchors(path)]
    print("anchors updated in: " + (", ".join(changed) if changed else "nothing"))


IMAGE = re.compile(r"!\[[^\]\n]*\]\((?P<target>[^)\s]+)\)")


@functools.cache
def load_figures():
    """docs/figures.py as a module (it is a script, not part of a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("docs_figures", DOCS / "figures.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module           # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_images_exist_and_every_chapter_graph_is_drawn_and_shown():
    """Every embedded image exists; docs/figures.py draws a graph for each chapter that shows one, and
    each graph it draws is shown by its chapter (``make figures`` regenerates them)."""
    figures = load_figures()
    shown = {}
    for doc in markdown_files():
        for match in IMAGE.finditer(prose(doc)):
            target = (doc.parent / match["target"]).resolve()
            assert target.is_file(), f"{doc.relative_to(ROOT)}: missing image {match['target']}"
            if target.name.startswith("graph_"):
                shown[target.stem.removeprefix("graph_")] = doc.name
    assert set(shown) == set(figures.GRAPHS)
    assert all(doc.startswith(number + "-") for number, doc in shown.items()), shown


def test_a_graph_is_drawn(tmp_path):
    figures = load_figures()
    path = figures.draw("04", figures.GRAPHS["04"], tmp_path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
