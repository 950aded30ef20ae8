# The two set-up commands are `make demo` and `make test`; see README.md.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
OUT := out
DEMO_DB := $(OUT)/demo/tenant.sqlite
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]-*.ipynb))

.PHONY: demo test lint unit nbval lab bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

$(DEMO_DB): $(wildcard scimtools/demo/*.py scimtools/sandbox/*.py data/demo/*.json data/lambdas/*.js) | $(VENV)/.installed
	$(BIN)/scimtools demo build --db $@

# The notebooks do not depend on each other (the ones that write use a throwaway copy
# of the demo tenant), so two run at a time, one per core.
demo: $(VENV)/.installed $(DEMO_DB)
	@mkdir -p $(OUT)
	@printf '%s\n' $(NOTEBOOKS) | SCIMTOOLS_DEMO_DB=$(abspath $(DEMO_DB)) xargs -P 2 -I{} \
		$(BIN)/jupyter nbconvert --to html --execute --ExecutePreprocessor.timeout=600 \
		--log-level=ERROR --output-dir $(OUT) {}
	@echo "HTML copies of the notebooks are in $(OUT)/"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

unit: $(VENV)/.installed-dev $(DEMO_DB)
	SCIMTOOLS_DEMO_DB=$(abspath $(DEMO_DB)) $(BIN)/pytest tests scimtools

nbval: $(VENV)/.installed-dev $(DEMO_DB)
	SCIMTOOLS_DEMO_DB=$(abspath $(DEMO_DB)) $(BIN)/pytest -p no:cacheprovider \
		--nbval notebooks/ --nbval-sanitize-with notebooks/nbval-sanitize.cfg \
		-o addopts="" -o testpaths=notebooks

test: lint unit nbval

lab: $(VENV)/.installed $(DEMO_DB)
	SCIMTOOLS_DEMO_DB=$(abspath $(DEMO_DB)) $(BIN)/scimtools lab

# Runs every benchmark (each bounded in time and memory) and writes the table of
# figures into README.md between the bench markers; BENCH_ARGS passes options to
# benchmarks/run_all.py (--only NAME ..., --limit NAME=SECONDS, --no-readme).
bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
