# Tandem: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS := gateway,cloud,tools,dev
# Debian packages the system needs to run (demo) and to be tested (test).
DEB_RUN  := python3-venv
DEB_TEST := python3-venv socat libcoap3-bin

.PHONY: demo test lint venv clean help
help:
	@echo "make demo   - install into $(VENV) and run cloud + gateway + 3 nodes"
	@echo "make test   - install test dependencies and run the whole suite"
	@echo "make lint   - ruff + mypy"

$(BIN)/.installed: setup.cfg pyproject.toml
	@tools/sh/ensure-debian-packages $(DEB_RUN)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/tandem demo

test: venv
	@tools/sh/ensure-debian-packages $(DEB_TEST)
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
