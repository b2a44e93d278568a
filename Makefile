# Tandem: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Debian packages: to run the system (demo), and to test it against real peers.
DEB_RUN  := python3-venv
DEB_TEST := python3-venv gcc pkg-config socat libcoap3-bin influxdb postgresql \
            swtpm swtpm-tools tpm2-tools libtss2-dev chromium redis-server
EXTRAS_RUN  := gateway,cloud,tools
EXTRAS_TEST := gateway,cloud,tools,tpm,dev,train
# Every dependency pinned (all extras); `make lock` regenerates it from setup.cfg.
LOCK := requirements/constraints.txt

.PHONY: demo test test-fast lint lock venv venv-test clean help
help:
	@echo "make demo   - install into $(VENV) and run cloud + gateway + 3 nodes"
	@echo "make test   - install test dependencies and run the whole suite"
	@echo "make test-fast - the fast subset (no real services, under a minute)"
	@echo "make lint   - ruff + mypy (CPython, and firmware/ against the ESP32 stubs) + layer contracts"
	@echo "make lock   - re-pin every dependency into $(LOCK) after changing setup.cfg"

# One stamp per set of extras, so `make test` after `make demo` adds what tests need.
$(BIN)/.installed-run: setup.cfg setup.py pyproject.toml $(LOCK)
	@tools/sh/ensure-debian-packages $(DEB_RUN)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[$(EXTRAS_RUN)]'
	@touch $@

$(BIN)/.installed-test: setup.cfg setup.py pyproject.toml $(LOCK)
	@tools/sh/ensure-debian-packages $(DEB_TEST)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[$(EXTRAS_TEST)]'
	@touch $@

venv: $(BIN)/.installed-run
venv-test: $(BIN)/.installed-test

demo: venv
	$(BIN)/tandem demo

test: venv-test
	$(BIN)/python -m pytest -q -rs --durations=15 $(PYTEST_ARGS)

# The fast subset to iterate with: pure units, no real services or nodes, under a minute
# on a loaded 2-core machine. The whole suite (make test) stays the gate.
FAST_TESTS := tests/wire tests/test_one_definition.py tests/test_waiting.py tests/tools/test_packaging.py \
              tests/gateway/test_access_units.py tests/gateway/test_windows.py \
              tests/gateway/test_features.py tests/gateway/test_rules_loader.py \
              tests/gateway/test_modbus_registers.py tests/gateway/test_config.py \
              tests/gateway/test_rules_engine.py tests/gateway/test_journal.py \
              tests/gateway/test_outbox.py tests/cloud/test_config.py
test-fast: venv-test
	$(BIN)/python -m pytest -q -m "not slow" $(FAST_TESTS) $(PYTEST_ARGS)

# The soak benchmark target: 30 minutes, 3 gateways x 17 nodes, faults on a schedule
# (make test runs the same test for 3 minutes with 4 nodes per gateway).
.PHONY: soak
soak: venv-test
	TANDEM_SOAK_MINUTES=30 TANDEM_SOAK_NODES=17 $(BIN)/python -m pytest -q -s \
		tests/e2e/test_soak.py $(PYTEST_ARGS)

# mypy reads packages from folders: build/typecheck/tandem links the program folders
# under the names they are installed as (setup.py maps them into `tandem`).
TYPECHECK := build/typecheck/tandem
$(TYPECHECK):
	mkdir -p $@
	for p in wire gateway cloud tools; do ln -sfn ../../../$$p $@/$$p; done

lint: venv-test $(TYPECHECK) lint-firmware
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# pip-tools resolves all extras at once, so run and test environments share one set of pins;
# existing pins are kept (new dependencies added): `make lock LOCK_ARGS=--upgrade` moves them all.
lock: $(BIN)/.installed-run
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --all-extras --strip-extras --allow-unsafe $(LOCK_ARGS) \
	    --no-emit-index-url --no-emit-find-links -o $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

# MicroPython's stubs go in their own directory: they shadow CPython's stdlib.
$(VENV)/mpy-stubs: $(BIN)/.installed-test
	$(BIN)/pip install --quiet --target $@ micropython-esp32-stubs==1.29.0.post1

.PHONY: lint-firmware
lint-firmware: $(VENV)/mpy-stubs
	$(BIN)/mypy --config-file firmware/mypy.ini firmware
