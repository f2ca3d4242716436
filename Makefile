# omnistream: `make demo` and `make test` work from a clean clone (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BROKER := deploy/kafka/broker.sh
PYTEST_ARGS ?=

.PHONY: env kafka broker-start broker-stop lint test test-python test-cpp test-faults demo bench evaluate clean

# Python environment with the pinned dependencies and the C++ extension (editable install).
env: $(VENV)/.installed
$(VENV)/.installed: requirements.lock pyproject.toml CMakeLists.txt $(wildcard csrc/*)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-build-isolation -e .
	touch $@

kafka:
	$(BROKER) fetch

broker-start: kafka
	$(BROKER) start

broker-stop:
	$(BROKER) stop

# ruff, pinned in requirements.lock like every other tool; its rules are in pyproject.toml.
lint: env
	$(VENV)/bin/ruff check .

test-cpp: env
	$(VENV)/bin/cmake -S . -B build/ctest -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja) \
	    -DOMNISTREAM_BUILD_TESTS=ON > /dev/null
	$(VENV)/bin/cmake --build build/ctest
	$(VENV)/bin/ctest --test-dir build/ctest --output-on-failure

test-python: env kafka
	$(PY) -m pytest $(PYTEST_ARGS)

# The e2e tests start (and stop) their own broker on a spare port through deploy/.
test: test-cpp test-python

# The long fault injections (broker outages of 1 and 5 minutes), each compared score by score
# with the in-process reference; the short ones run in `make test`.
test-faults: env kafka
	$(PY) -m pytest tests/e2e/test_faults.py -m faults_slow -s $(PYTEST_ARGS)

demo: env kafka
	$(VENV)/bin/omnistream demo

bench: env
	$(PY) bench/run.py

evaluate: env
	$(VENV)/bin/omnistream evaluate

clean:
	rm -rf build $(VENV)
