# Two entry points: `make run` (the system on the embedded store) and `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test demo verify clean constraints browser

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/caselog serve

demo: $(STAMP)
	$(BIN)/caselog demo

# The suite in TEST_PROCESSES processes (pytest-xdist): most of its time is waiting on servers and
# process starts, so two processes on two cores take about half as long. TEST_PROCESSES=0: one process.
TEST_PROCESSES ?= 2

test: $(STAMP) browser
	$(BIN)/pytest -n $(TEST_PROCESSES)

# The dashboard's browser test (tests/e2e/test_dashboard_browser.py) drives Debian's chromium through
# chromium-driver, and the instruction-count bench's test (tests/e2e/test_bench_instructions.py) runs
# valgrind: installed here when missing (as root, e.g. on CI); otherwise those tests fail saying so.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 || ! command -v valgrind >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium, chromium-driver and valgrind for the browser and instruction-count tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver valgrind >/dev/null; \
	  else \
	    echo "chromium, chromium-driver or valgrind is missing (apt-get install chromium chromium-driver valgrind, as root)" >&2; \
	  fi; \
	fi

verify: $(STAMP)
	$(BIN)/caselog verify

# The versions the Dockerfile installs (pip install -c constraints.txt): those of this venv, where the tests ran.
constraints: $(STAMP)
	{ echo "# Pinned versions for the image (Dockerfile: pip install -c constraints.txt .), from the tested venv:"; \
	  echo "# regenerate with \`make constraints\` (pip freeze --exclude-editable) after changing dependencies."; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf $(VENV) caselog-data .hypothesis
