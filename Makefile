# dbt-dinmo: `make demo` shows a sync end to end; `make test` runs the whole suite.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

# dbt-core 1.12 cannot install without GitHub access: constraints.txt pins the 1.11 line.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25.1"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[duckdb,postgres]" --group test --group lint
	touch $(STAMP)

demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/ruff check dbt_dinmo tui tests scripts benchmarks
	$(BIN)/mypy

test: install lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/bench_attributes.py

clean:
	rm -rf $(VENV) sample_project/target sample_project/logs sample_project/.dinmo sample_project/*.duckdb \
		sample_project/dbt_packages sample_project/package-lock.yml
