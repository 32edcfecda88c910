# Two entry points: `make run` (the system on the embedded store) and `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test demo verify clean constraints

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

# The versions the Dockerfile installs (pip install -c constraints.txt): those of this venv, where the tests ran.
constraints: $(STAMP)
	{ echo "# Pinned versions for the image (Dockerfile: pip install -c constraints.txt .), from the tested venv:"; \
	  echo "# regenerate with \`make constraints\` (pip freeze --exclude-editable) after changing dependencies."; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf $(VENV) caselog-data .hypothesis
