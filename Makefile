# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench-merge bench-faults bench-search bench-stack clean

venv: $(STAMP)

# torch first and pinned: it is a CPU build on local disk; anything else would pull CUDA.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/recycle demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench-merge: $(STAMP)
	$(BIN)/python bench/merge.py

bench-faults: $(STAMP)
	$(BIN)/python bench/faults.py

bench-stack: $(STAMP)
	$(BIN)/python bench/stack.py

bench-search: $(STAMP)
	$(BIN)/python bench/search.py

clean:
	rm -rf $(VENV) .cache runs
