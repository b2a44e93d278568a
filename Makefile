# Tandem: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Debian packages: to run the system (demo), and to test it against real peers.
DEB_RUN  := python3-venv
DEB_TEST := python3-venv gcc pkg-config socat libcoap3-bin influxdb postgresql \
            swtpm swtpm-tools tpm2-tools libtss2-dev
EXTRAS_RUN  := gateway,cloud,tools
EXTRAS_TEST := gateway,cloud,tools,tpm,dev

.PHONY: demo test lint venv venv-test clean help
help:
	@echo "make demo   - install into $(VENV) and run cloud + gateway + 3 nodes"
	@echo "make test   - install test dependencies and run the whole suite"
	@echo "make lint   - ruff + mypy (CPython code, and firmware/ against the ESP32 stubs)"

# One stamp per set of extras, so `make test` after `make demo` adds what tests need.
$(BIN)/.installed-run: setup.cfg setup.py pyproject.toml
	@tools/sh/ensure-debian-packages $(DEB_RUN)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS_RUN)]'
	@touch $@

$(BIN)/.installed-test: setup.cfg setup.py pyproject.toml
	@tools/sh/ensure-debian-packages $(DEB_TEST)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS_TEST)]'
	@touch $@

venv: $(BIN)/.installed-run
venv-test: $(BIN)/.installed-test

demo: venv
	$(BIN)/tandem demo

test: venv-test
	$(BIN)/python -m pytest -q -rs --durations=15 $(PYTEST_ARGS)

# mypy reads packages from folders: build/typecheck/tandem links the program folders
# under the names they are installed as (setup.py maps them into `tandem`).
TYPECHECK := build/typecheck/tandem
$(TYPECHECK):
	mkdir -p $@
	for p in wire gateway cloud tools; do ln -sfn ../../../$$p $@/$$p; done

lint: venv-test $(TYPECHECK) lint-firmware
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache

# MicroPython's stubs go in their own directory: they shadow CPython's stdlib.
$(VENV)/mpy-stubs: $(BIN)/.installed-test
	$(BIN)/pip install --quiet --target $@ micropython-esp32-stubs==1.29.0.post1

.PHONY: lint-firmware
lint-firmware: $(VENV)/mpy-stubs
	$(BIN)/mypy --config-file firmware/mypy.ini firmware
