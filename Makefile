# Two commands a newcomer needs; each builds the virtual environment first if it is missing.
#   make train   trains the NumPy SimpleCNN on MNIST (IMPL=torch for the PyTorch one)
#   make test    runs the whole test suite (parity suite included)
#   make lint    ruff and mypy, both clean
# On a machine with a different torch build in mind, override the pin: make test TORCH=torch==2.13.0

VENV   ?= .venv
PYTHON ?= python3
TORCH  ?= torch==2.13.0
IMPL   ?= numpy
ARGS   ?=
BIN     = $(VENV)/bin

.PHONY: install train test lint bench clean anchors figures

install: $(VENV)/.installed

# torch is installed first, on its own, with an exact pin: the project's "torch>=2.3" is then already
# satisfied and pip does not go looking for a different (much larger) build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

train: install
	$(BIN)/simplecnn train --impl $(IMPL) $(ARGS)

test: install
	$(BIN)/python -m pytest $(ARGS)

# ruff (rules in pyproject.toml) on all Python code, mypy on the three packages; both must be clean.
LINTED = scratch torch_impl simplecnn tests parity_tests benchmarks $(wildcard examples)
lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy

# Move every docs link [`name`](file.py#Ln) to the line that defines name (tests/test_docs.py checks them).
anchors: install
	$(BIN)/python tests/test_docs.py

# The computational-graph figure of each chapter (docs/images/graph_NN.png), drawn by docs/figures.py.
figures: install
	MPLBACKEND=Agg $(BIN)/python docs/figures.py

bench: install
	$(BIN)/python benchmarks/train_step.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
