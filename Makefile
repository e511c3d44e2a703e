# qwen-course: the two commands are `make train` and `make test`.
# Both create .venv (with nothing but Python 3.10+ on the machine) and install
# requirements.txt plus qwenlib itself (editable) before doing their job.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup train test export check-export unit notebooks book bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "qwen-course needs Python 3.10 or newer, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -e .
	@touch $@

## the main job: train the default config; checkpoints and metrics.json go to models/
train: setup
	$(PY) -m qwenlib train

## every check: notebooks -> qwenlib in sync, the book builds, unit tests, every notebook re-run
test: setup
	$(PY) tools/export.py --check
	$(MAKE) --no-print-directory book
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --durations=15

## regenerate qwenlib/ from notebooks/
export:
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) tools/export.py

## the rendered book in _build/html (notebooks render from their committed outputs)
book: setup
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

bench: setup
	@ls benchmarks/*.py >/dev/null 2>&1 || { echo "no benchmarks yet"; exit 0; }; \
	for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build
