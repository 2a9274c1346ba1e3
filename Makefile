# The two front-door commands: `make demo` and `make test` (each installs what it needs first).
PYTHON ?= python3
PIP = $(PYTHON) -m pip
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser demo test lint bench

# Installs once per Python and checkout: the stamp holds this Python's prefix and pyproject.toml's hash, and
# is trusted only while torch is the pinned version and syft-kernel is installed (editable) from this folder,
# so a second `make demo` starts at once and a fresh clone (CI) installs everything.
STAMP = .installed
TORCH = 2.13.0
STAMP_KEY = $(PYTHON) -c "import hashlib, pathlib, sys; \
	print(sys.prefix, hashlib.sha256(pathlib.Path('pyproject.toml').read_bytes()).hexdigest())"
INSTALLED = $(PYTHON) -c "import json, os, sys; sys.path[:] = [p for p in sys.path if p not in ('', os.getcwd())]; \
	import importlib.metadata as m, pathlib; \
	here = json.loads(m.distribution('syft-kernel').read_text('direct_url.json') or '{}').get('url'); \
	sys.exit(m.version('torch').split('+')[0] != '$(TORCH)' or here != pathlib.Path.cwd().resolve().as_uri())"
install:
	@key="$$($(STAMP_KEY))"; \
	if [ -f $(STAMP) ] && [ "$$(cat $(STAMP))" = "$$key" ] && $(INSTALLED) 2>/dev/null; then \
		echo "already installed for this Python (rm $(STAMP) to install again)"; \
	else \
		$(PIP) install --quiet torch==$(TORCH) && \
		$(PIP) install --quiet -e '.[test,demo]' && \
		$(PYTHON) -m syft_kernel.cli install && \
		printf '%s' "$$key" > $(STAMP); \
	fi

# Browser tests drive Debian's chromium through Playwright (never `playwright install`).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/bwrap || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium bubblewrap libseccomp2; }

# `make demo PORT=5600 LAB_PORT=8890` when the default ports are taken (the node's, JupyterLab's; or set them
# in the environment); DEMO_DIR is the node's folder, DEMO_ARGS more `syft-kernel demo` flags (e.g. --no-lab).
# `exec`: python is the recipe's process, so a SIGTERM that make passes on (or Ctrl-C) reaches it and it stops
# everything it started.
PORT ?= 5555
LAB_PORT ?= 8888
DEMO_DIR ?= demo-node
DEMO_ARGS ?=
demo: install
	exec $(PYTHON) -m syft_kernel.cli demo --dir '$(DEMO_DIR)' --port $(PORT) --lab-port $(LAB_PORT) $(DEMO_ARGS)

# the public API: its docstrings (numpy convention) and its types (mypy --strict) are checked
PUBLIC_API = syft_kernel/__init__.py syft_kernel/client.py syft_kernel/aio.py syft_kernel/pointer.py \
	syft_kernel/plans.py syft_kernel/requests.py syft_kernel/datasets.py syft_kernel/dp.py syft_kernel/code.py \
	syft_kernel/governance.py syft_kernel/launcher.py syft_kernel/users.py syft_kernel/audit.py \
	syft_kernel/records.py syft_kernel/network.py syft_kernel/fl/__init__.py syft_kernel/fl/job.py \
	syft_kernel/fl/optim.py syft_kernel/fl/strategies/*.py core/errors.py core/keys.py

lint:
	$(PYTHON) -m ruff format --check syft_kernel core node gateway widgets extension tests bench
	$(PYTHON) -m ruff check syft_kernel core node gateway widgets extension tests bench
	$(PYTHON) -m ruff check --select D --ignore D105,D205,D401 $(PUBLIC_API)
	$(PYTHON) tests/check_types.py
	$(PYTHON) tests/test_rooms.py

test: install browser lint
	SYFT_NOTEBOOK_CLEANUP=1 $(PYTHON) -m pytest tests notebooks --nbval --nbval-sanitize-with notebooks/nbval-sanitize.cfg -n auto --dist loadfile -p no:benchmark

bench: install
	$(PYTHON) bench/bench_wire.py
	$(PYTHON) bench/bench_requests.py
	$(PYTHON) bench/bench_kernel.py
	$(PYTHON) bench/bench_dp.py
	$(PYTHON) bench/bench_ui.py
	$(PYTHON) bench/bench_sandbox.py
	$(PYTHON) bench/bench_server.py
	$(PYTHON) bench/bench_fl.py --quick
