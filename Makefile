# The two front-door commands: `make demo` and `make test` (each installs what it needs first).
PYTHON ?= python3
PIP = $(PYTHON) -m pip
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser demo test lint bench

# installs once per Python (and again when pyproject.toml changes): a second `make demo` starts at once
STAMP = .installed
install:
	@if $(PYTHON) -c "import sys, pathlib, torch, syft_kernel; s = pathlib.Path('$(STAMP)'); \
		sys.exit(not (s.exists() and s.read_text() == sys.prefix \
		and s.stat().st_mtime >= pathlib.Path('pyproject.toml').stat().st_mtime))" 2>/dev/null; then \
		echo "already installed for this Python (rm $(STAMP) to install again)"; \
	else \
		$(PIP) install --quiet torch==2.13.0 && \
		$(PIP) install --quiet -e '.[test,demo]' && \
		$(PYTHON) -m syft_kernel.cli install && \
		$(PYTHON) -c "import sys; open('$(STAMP)', 'w').write(sys.prefix)"; \
	fi

# Browser tests drive Debian's chromium through Playwright (never `playwright install`).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/bwrap || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium bubblewrap libseccomp2; }

# `make demo PORT=5600 LAB_PORT=8890` when the default ports are taken
PORT ?= 5555
LAB_PORT ?= 8888
demo: install
	exec $(PYTHON) -m syft_kernel.cli demo --port $(PORT) --lab-port $(LAB_PORT)

# the public API: its docstrings (numpy convention) and its types (mypy --strict) are checked
PUBLIC_API = syft_kernel/__init__.py syft_kernel/client.py syft_kernel/aio.py syft_kernel/pointer.py \
	syft_kernel/plans.py syft_kernel/requests.py syft_kernel/datasets.py syft_kernel/dp.py syft_kernel/code.py \
	syft_kernel/governance.py syft_kernel/launcher.py syft_kernel/users.py syft_kernel/audit.py \
	syft_kernel/records.py core/errors.py core/keys.py

lint:
	$(PYTHON) -m ruff format --check syft_kernel core node widgets extension tests bench
	$(PYTHON) -m ruff check syft_kernel core node widgets extension tests bench
	$(PYTHON) -m ruff check --select D --ignore D105,D205,D401 $(PUBLIC_API)
	$(PYTHON) tests/check_types.py
	$(PYTHON) tests/test_rooms.py

test: install browser lint
	$(PYTHON) -m pytest tests notebooks --nbval --nbval-sanitize-with notebooks/nbval-sanitize.cfg -n auto --dist loadfile -p no:benchmark

bench: install
	$(PYTHON) bench/bench_wire.py
	$(PYTHON) bench/bench_requests.py
	$(PYTHON) bench/bench_kernel.py
	$(PYTHON) bench/bench_dp.py
	$(PYTHON) bench/bench_ui.py
	$(PYTHON) bench/bench_sandbox.py
	$(PYTHON) bench/bench_server.py
