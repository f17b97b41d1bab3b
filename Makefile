# The two commands the README starts with: `make demo` and `make test`.
# Everything is installed from this repository's own files into local virtualenvs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The board runs Python 3.10: the device-side tests run there too (pyenv provides it here).
PYTHON310 ?= $(shell for p in $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $$(command -v python3.10); do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo "$$p"; break; }; done)
VENV310 ?= .venv310
PY310 := $(VENV310)/bin/python

.PHONY: install install310 test test-main test-board310 demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(PY310):
	@test -n "$(PYTHON310)" || { echo "python3.10 not found: install it (e.g. pyenv install 3.10) or set PYTHON310=/path/to/python3.10"; exit 1; }
	$(PYTHON310) -m venv $(VENV310)
	$(PY310) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q -e '.[dev]'

install310: $(PY310)
	$(PY310) -m pip install -q -e '.[dev]'

test: test-main test-board310

# Four workers on two cores: most tests wait on real processes and sockets, not the CPU.
# Each test file stays on one worker (its module-scoped services are started once).
# Every test is parallel-safe (ports bound to 0, tmp paths); TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 4

test-main: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Device-side unit tests under the board's Python.
test-board310: install310
	$(PY310) -m pytest -q -m device310

# The whole loop on this machine: queue service, simulated board, submit, results, plot.
demo: install
	$(PY) demo/run_demo.py --out demo-out
