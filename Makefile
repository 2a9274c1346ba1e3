# The two front-door commands: `make demo` and `make test` (each installs what it needs first).
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test lint bench

install:
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test,demo]'
	$(PYTHON) -m syft_kernel.cli install

demo: install
	$(PYTHON) -m syft_kernel.cli demo

lint:
	$(PYTHON) -m ruff check syft_kernel node widgets extension tests bench

test: install lint
	$(PYTHON) -m pytest tests notebooks --nbval --nbval-sanitize-with notebooks/nbval-sanitize.cfg

bench: install
	$(PYTHON) bench/bench_wire.py
	$(PYTHON) bench/bench_requests.py
	$(PYTHON) bench/bench_kernel.py
