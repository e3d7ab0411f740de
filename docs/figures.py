"""Draw the computational graph of each chapter: ``make figures`` writes ``docs/images/graph_NN.png``.

Each graph is a row of nodes (values in round boxes, operations in square ones) joined by forward
edges (black, left to right) and the gradient that flows back along each edge (red, dashed, labelled
with what the backward pass sends). The graphs are data (:data:`GRAPHS`); one function draws them all.

    python docs/figures.py            # all graphs
    python docs/figures.py 03 04      # some chapters
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["mathtext.fontset"] = "cm"     # $...$ labels look like the chapters' math (ν is not v)
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
from matplotlib.patches import FancyArrowPatch  # noqa: E402

IMAGES = Path(__file__).resolve().parent / "images"


@dataclass
class Graph:
    """Nodes at (column, row) positions; edges ``(from, to, backward label)``."""

    title: str
    nodes: dict[str, tuple[float, float, str]]          # name -> (x, y, "value" | "op")
    edges: list[tuple[str, str, str]] = field(default_factory=list)


# Symbols of the notation table (docs/README.md) that need matplotlib's mathtext.
SIGMA_EPS = r"$\sigma_\epsilon$"                 # batch-norm's sqrt(var + eps)
P_DROP = r"$p_{\mathrm{drop}}$"                    # dropout's drop probability
NORMALIZE = f"x̂ = (x-μ)/{SIGMA_EPS}"
DROP = f"× M / (1-{P_DROP})"
M_UPDATE = r"$m \leftarrow \beta_1 m + (1-\beta_1)\,g$"     # Adam's moments, chapter 9
NU_UPDATE = r"$\nu \leftarrow \beta_2 \nu + (1-\beta_2)\,g^2$"
ADAM_STEP = r"$\theta \;-\!\!= \eta\, \hat m / (\sqrt{\hat\nu} + \epsilon)$"

GRAPHS: dict[str, Graph] = {
    "01": Graph("one training step: forward (black), backward (red)", {
        "x": (0, 0, "value"), "conv1..relu2": (1.6, 0, "op"), "fc1, fc2": (3.2, 0, "op"),
        "logits": (4.6, 0, "value"), "cross-entropy": (6.0, 0, "op"), "L": (7.3, 0, "value")},
        [("x", "conv1..relu2", ""), ("conv1..relu2", "fc1, fc2", "g (N,64,4,4)"),
         ("fc1, fc2", "logits", "g (N,10)"), ("logits", "cross-entropy", "(π - onehot)/N"),
         ("cross-entropy", "L", "1")]),
    "02": Graph("a layer: forward keeps a cache, backward maps g to dL/dx", {
        "x": (0, 0, "value"), "forward": (1.8, 0, "op"), "y": (3.6, 0, "value"),
        "cache": (1.8, -1.1, "value"), "θ": (1.8, 1.1, "value")},
        [("x", "forward", "dL/dx"), ("forward", "y", "g"), ("θ", "forward", "θ.grad"),
         ("forward", "cache", "")]),
    "03": Graph("convolution: y = w * x + b (im2col, one GEMM)", {
        "x": (0, 0, "value"), "im2col": (1.5, 0, "op"), "cols": (3.0, 0, "value"),
        "w": (3.0, 1.1, "value"), "matmul + b": (4.6, 0, "op"), "b": (4.6, 1.1, "value"),
        "y": (6.1, 0, "value")},
        [("x", "im2col", "col2im (adds)"), ("im2col", "cols", "dcols"), ("cols", "matmul + b", "w₂ᵀ g"),
         ("w", "matmul + b", "g colsᵀ"), ("b", "matmul + b", "Σ g"), ("matmul + b", "y", "g")]),
    "04": Graph("max-pooling: max routes", {
        "x": (0, 0, "value"), "4 strided slices": (1.8, 0, "op"), "max over κ": (3.7, 0, "op"),
        "y": (5.3, 0, "value")},
        [("x", "4 strided slices", "slices add"), ("4 strided slices", "max over κ", "g to the first max"),
         ("max over κ", "y", "g")]),
    "05": Graph("batch-norm: two paths through μ and σ²", {
        "x": (0, 0, "value"), "μ, σ²": (1.6, 1.0, "op"), NORMALIZE: (3.0, 0, "op"),
        "γ x̂ + β": (4.6, 0, "op"), "y": (6.0, 0, "value"), "γ, β": (4.6, 1.1, "value")},
        [("x", "μ, σ²", f"−γ(ḡ + x̂ ·mean(g x̂))/{SIGMA_EPS}"), ("μ, σ²", NORMALIZE, ""),
         ("x", NORMALIZE, f"γ g/{SIGMA_EPS} (direct)"), (NORMALIZE, "γ x̂ + β", "γ g"),
         ("γ, β", "γ x̂ + β", "Σ g x̂, Σ g"), ("γ x̂ + β", "y", "g")]),
    "06": Graph("dropout: multiply by a fixed mask", {
        "x": (0, 0, "value"), DROP: (1.8, 0, "op"), "y": (3.6, 0, "value"), "M": (1.8, 1.1, "value")},
        [("x", DROP, f"g M / (1-{P_DROP})"), ("M", DROP, ""), (DROP, "y", "g")]),
    "07": Graph("linear + ReLU: multiply swaps, max routes", {
        "x": (0, 0, "value"), "x wᵀ + b": (1.8, 0, "op"), "w, b": (1.8, 1.1, "value"),
        "max(·, 0)": (3.6, 0, "op"), "y": (5.1, 0, "value")},
        [("x", "x wᵀ + b", "g w"), ("w, b", "x wᵀ + b", "gᵀ x, Σ g"),
         ("x wᵀ + b", "max(·, 0)", "g [x > 0]"), ("max(·, 0)", "y", "g")]),
    "08": Graph("softmax cross-entropy: one fused node", {
        "z": (0, 0, "value"), "log-softmax": (1.7, 0, "op"), "−mean log π_τ": (3.6, 0, "op"),
        "L": (5.2, 0, "value")},
        [("z", "log-softmax", "(π − onehot(τ))/N"), ("log-softmax", "−mean log π_τ", ""),
         ("−mean log π_τ", "L", "1")]),
    "09": Graph("Adam: the gradient feeds two moving averages", {
        "g": (0, 0, "value"), M_UPDATE: (2.0, 0.7, "op"), NU_UPDATE: (2.0, -0.7, "op"),
        ADAM_STEP: (4.6, 0, "op"), "θ": (6.4, 0, "value")},
        [("g", M_UPDATE, ""), ("g", NU_UPDATE, ""), (M_UPDATE, ADAM_STEP, ""), (NU_UPDATE, ADAM_STEP, ""),
         (ADAM_STEP, "θ", "")]),
    "10": Graph("verification: one scalar f = Σ G·y, three oracles", {
        "x": (0, 0, "value"), "layer": (1.5, 0, "op"), "y": (2.9, 0, "value"),
        "Σ G·y": (4.3, 0, "op"), "f": (5.6, 0, "value")},
        [("x", "layer", "scratch / torch / finite diff."), ("layer", "y", "G"), ("y", "Σ G·y", "G"),
         ("Σ G·y", "f", "1")]),
    "11": Graph("elementwise activations: each backward is g times a local slope", {
        "x": (0, 0, "value"), "sigmoid(x), tanh(x), ...": (1.9, 0, "op"), "y": (3.8, 0, "value")},
        [("x", "sigmoid(x), tanh(x), ...", "g y(1−y), g(1−y²), ..."), ("sigmoid(x), tanh(x), ...", "y", "g")]),
    "12": Graph("average pooling: add distributes, then scale", {
        "x": (0, 0, "value"), "window sum": (1.8, 0, "op"), "÷ divisor": (3.5, 0, "op"), "y": (5.0, 0, "value")},
        [("x", "window sum", "the same share to each entry"), ("window sum", "÷ divisor", "g / divisor"),
         ("÷ divisor", "y", "g")]),
    "13": Graph("a loss: per-element terms, then a reduction", {
        "input": (0, 0, "value"), "target": (0, 1.0, "value"), "ℓ(input, target)": (1.9, 0, "op"),
        "mean / sum": (3.7, 0, "op"), "L": (5.1, 0, "value")},
        [("input", "ℓ(input, target)", "dℓ/dinput · grad_output"), ("target", "ℓ(input, target)", ""),
         ("ℓ(input, target)", "mean / sum", "1/D or 1"), ("mean / sum", "L", "1")]),
    "14": Graph("SGD with momentum: the gradient feeds a velocity", {
        "g": (0, 0, "value"), "φ ← ρφ + g": (1.8, 0, "op"), "θ −= η φ": (3.6, 0, "op"),
        "θ": (5.1, 0, "value")},
        [("g", "φ ← ρφ + g", ""), ("φ ← ρφ + g", "θ −= η φ", ""), ("θ −= η φ", "θ", "")]),
}


def draw(number: str, graph: Graph, directory: Path = IMAGES) -> Path:
    """Draw one graph to ``directory/graph_<number>.png`` (about 700 x 200 pixels) and return the path."""
    xs = [x for x, _, _ in graph.nodes.values()]
    ys = [y for _, y, _ in graph.nodes.values()]
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.9 * (max(ys) - min(ys) + 1)), dpi=90)
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.axis("off")
    ax.set_title(graph.title, fontsize=10)
    for name, (x, y, kind) in graph.nodes.items():
        style = "round,pad=0.12" if kind == "value" else "square,pad=0.12"
        colour = "#e8f0fe" if kind == "value" else "#fff4d6"
        ax.text(x, y, name, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle=style, fc=colour, ec="#555555"))
    for start, end, label in graph.edges:
        (x0, y0, _), (x1, y1, _) = graph.nodes[start], graph.nodes[end]
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=10, color="black",
                                     shrinkA=22, shrinkB=22, lw=1))
        if label:
            ax.add_patch(FancyArrowPatch((x1, y1 - 0.12), (x0, y0 - 0.12), arrowstyle="-|>", mutation_scale=9,
                                         color="#c0392b", linestyle="--", shrinkA=22, shrinkB=22, lw=1))
            if y0 == y1:                               # horizontal: the label under the edge
                ax.text((x0 + x1) / 2, y0 - 0.3, label, ha="center", va="top", fontsize=7.5, color="#c0392b")
            else:                                      # slanted or vertical: beside its middle
                ax.text((x0 + x1) / 2 + 0.12, (y0 + y1) / 2, label, ha="left", va="center", fontsize=7.5,
                        color="#c0392b")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"graph_{number}.png"
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def main(numbers: list[str]) -> None:
    for number in numbers or sorted(GRAPHS):
        print(draw(number, GRAPHS[number]))


if __name__ == "__main__":
    main(sys.argv[1:])
