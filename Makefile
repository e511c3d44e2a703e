# qwen-course: the two commands are `make train` and `make test`.
# Both create .venv (with nothing but Python 3.10+ on the machine) and install
# requirements.txt plus qwenlib itself (editable) before doing their job.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BROWSER_STAMP := $(VENV)/.browser-deps
# the floors' folder holds torch's CUDA build (several GB, minutes to install), so it is kept
# between runs and clones, named by a hash of requirements-floors.txt's pins (its comments
# aside) and the Python version: changed pins or another Python get a folder of their own
FLOORS_KEY := $(shell sed 's/\#.*//; s/[[:space:]]//g; /^$$/d' requirements-floors.txt 2>/dev/null | sha256sum | cut -c1-16)
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
FLOORS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/qwen-course/floors-py$(PYVER)-$(FLOORS_KEY)
FLOORS_STAMP := $(FLOORS)/.installed
# the library's tests that also run under the lowest declared versions (make test-floors),
# torch 2.9 among them: everything that touches transformers, tokenizers, datasets, numpy,
# tqdm, gguf or the widgets; torch.optim.Muon (new in 2.9, chapter 6); the fused loss;
# and of the trainer a run with its progress bar, a resume and the checkpoint format. The
# whole unit suite passes under the floors too (run by hand: 3.8 min, too long for CI's 15)
FLOOR_TESTS := tests/test_dependencies.py tests/test_model.py tests/test_generation.py \
	tests/test_data.py tests/test_qwen3_checkpoints.py tests/test_clients.py tests/test_muon.py \
	tests/test_gguf.py tests/test_loss.py tests/test_safetensors_reading.py \
	tests/test_training.py::test_resume_continues_bit_exact \
	tests/test_training.py::test_checkpoints_load_with_weights_only_and_hold_everything \
	tests/test_training.py::test_metrics_json_is_strict_json_even_before_any_evaluation \
	tests/test_cli.py::test_exported_folder_generates_the_same_in_transformers_alone

.PHONY: setup browser-deps train test test-floors test-floors-all gpu-check export check-export unit notebooks book bench interop mutants clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "qwen-course needs Python 3.10 or newer, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -r requirements.txt -e .
	@# byte-compile on every core (pip does it on one: a minute longer on 2 cores); a file
	@# that does not compile (some packages ship Python 2 examples) is skipped, as pip does
	@$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	@touch $@

## the browser test's needs: Playwright (pip), Debian's chromium (apt-get, when missing),
## the widget scripts the book's pages load (npm registry; tools/browser_deps.py)
browser-deps: $(BROWSER_STAMP)

$(BROWSER_STAMP): $(STAMP) requirements-test.txt _config.yml tools/browser_deps.py
	$(PY) -m pip install --quiet -r requirements-test.txt
	@command -v chromium >/dev/null 2>&1 || [ -x "$${QWEN_COURSE_CHROMIUM:-}" ] || { \
	  echo "installing Debian's chromium for the browser test (apt-get)"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null || { \
	    echo "could not install chromium: install it (apt-get install chromium) or set QWEN_COURSE_CHROMIUM"; exit 1; }; }
	$(PY) tools/browser_deps.py
	@touch $@

## the lowest versions pyproject.toml admits, in a folder put in front of .venv's packages;
## installed beside it and renamed into place, so an interrupted install is never used
$(FLOORS_STAMP): | $(STAMP)
	@echo "installing requirements-floors.txt into $(FLOORS) (kept for later runs)"
	rm -rf $(FLOORS).partial
	$(PY) -m pip install --quiet --target $(FLOORS).partial -r requirements-floors.txt 2>&1 | \
	  grep -v "^WARNING: Location\|dependency resolver\|requires numpy>=1.25\|WARNING: Target directory" || true
	@test -d $(FLOORS).partial/transformers -a -d $(FLOORS).partial/torch || { \
	  echo "could not install requirements-floors.txt"; exit 1; }
	@touch $(FLOORS).partial/.installed
	rm -rf $(FLOORS) && mv $(FLOORS).partial $(FLOORS)

## conversion, generation, data and short-training tests under those lowest versions
test-floors: $(FLOORS_STAMP)
	QWEN_COURSE_FLOORS=1 HF_HUB_OFFLINE=1 PYTHONPATH=$(FLOORS) $(PY) -m pytest $(FLOOR_TESTS) -q

## every unit test (not the notebooks) under those lowest versions: 3.8 min, outside `make test`
test-floors-all: $(FLOORS_STAMP)
	QWEN_COURSE_FLOORS=1 HF_HUB_OFFLINE=1 PYTHONPATH=$(FLOORS) $(PY) -m pytest tests -q \
		--ignore=tests/test_book_site.py

## the main job: train the default config; checkpoints and metrics.json go to models/
train: setup
	$(PY) -m qwenlib train

## every check: notebooks -> qwenlib in sync, the book builds and works in a browser,
## unit tests (also under the lowest versions), every notebook re-run (screenshots of the
## pages: test-artifacts/screenshots). The notebooks re-run beside the unit tests, each
## process on one thread (tools/run_tests.py; their output: test-artifacts/notebooks.log).
## QWEN_COURSE_QUICK=1: the pages' demo trainings of chapters 6, 8 and 10 run a fifth to a
## quarter of their updates (the book shows the full versions)
test: setup browser-deps $(FLOORS_STAMP)
	$(PY) tools/export.py --check
	$(MAKE) --no-print-directory book
	$(PY) tools/run_tests.py

## regenerate qwenlib/ from notebooks/
export:
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) tools/export.py

## the rendered book in _build/html (notebooks render from their committed outputs)
book: setup
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

## the CUDA-only checks in one go (tests marked cuda, chapter 9's full run, the benchmarks),
## written to $OUT or test-artifacts/gpu-check; without a GPU it says so and exits 0
gpu-check: setup
	$(PY) tools/gpu_check.py

## GGUF files in llama.cpp itself: installs llama-cpp-python (it compiles llama.cpp: about
## ten minutes on two cores, once) and compares tokens, logits and greedy text with qwenlib's
interop: setup
	$(PY) -m pip install --quiet llama-cpp-python==0.3.36
	HF_HUB_OFFLINE=1 $(PY) benchmarks/gguf_interop.py

## mutation testing of the core modules (mutmut): slow, so not part of `make test`; the score
## per module is printed, the surviving mutants go to test-artifacts/mutants/. Some modules:
## make mutants MODULES="norm rope"
mutants: setup
	$(PY) -m pip install --quiet "mutmut==3.8.1"
	$(PY) tools/mutants.py $(MODULES)

bench: setup
	@ls benchmarks/*.py >/dev/null 2>&1 || { echo "no benchmarks yet"; exit 0; }; \
	for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build
