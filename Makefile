# Two entry points: `make run` (the system on the embedded store) and `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test demo verify clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/caselog serve

demo: $(STAMP)
	$(BIN)/caselog demo

test: $(STAMP)
	$(BIN)/pytest

verify: $(STAMP)
	$(BIN)/caselog verify

clean:
	rm -rf $(VENV) caselog-data .hypothesis
