# gardiffmini: `make book` builds the book at PROFILE; `make test` is what CI runs.
PROFILE ?= cpu
PYTHON ?= python3
# CI pins a CPU build of torch here; a user keeps the torch they have (or pip's default).
TORCH_SPEC ?=
VENV := .venv
BIN := $(VENV)/bin
BUILD := _build
export GARDIFF_DATA ?= $(CURDIR)/data

.PHONY: venv data book test unit notebooks-check book-check reproduce dryrun clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC) -e ".[book,test]"
	touch $@

venv: $(VENV)/.installed

data: venv
	$(BIN)/python -m gardiffmini data --profile $(PROFILE)

# onnxruntime-web for the Try it page, at the version of package-lock.json; without npm the
# book still builds and the page says what it is missing
node_modules/.package-lock.json: package-lock.json
	@if command -v npm >/dev/null; then npm ci --ignore-scripts --no-audit --no-fund; \
	else echo "npm not found: the Try it page will say what it is missing"; fi

book: data node_modules/.package-lock.json
	$(BIN)/python tools/build_book.py --profile $(PROFILE) --out $(BUILD)/$(PROFILE)

unit: venv
	$(BIN)/ruff check .
	$(BIN)/pytest tests

# nbval runs the executed notebooks again, one per core (xdist, a notebook's cells in one
# worker) with one torch thread each: 55 s instead of 99 s on a 2-core AMD EPYC, where two
# notebooks of two threads each took 124 s
notebooks-check: venv
	$(MAKE) book PROFILE=ci
	OMP_NUM_THREADS=1 $(BIN)/pytest -p no:cacheprovider --nbval-lax --nbval-cell-timeout=600 \
		-n auto --dist loadfile $(BUILD)/ci/src/notebooks

# every page of the ci book in headless Chromium with the network blocked (needs
# apt-get install chromium chromium-driver); screenshots go to _build/ci/screenshots
book-check: venv
	GARDIFF_BOOK_HTML=$(BUILD)/ci/_build/html $(BIN)/pytest -p no:cacheprovider tests/test_book_browser.py

test: unit notebooks-check book-check

# every chapter at PROFILE's shapes (image size, widths, latent channels) with each step count
# and data size cut to a few (GARDIFF_DRY_RUN); its data go to _build/dryrun-PROFILE/data
dryrun: venv
	$(BIN)/python tools/dryrun.py --profile $(PROFILE) --out $(BUILD)/dryrun-$(PROFILE)

reproduce: data
	$(BIN)/python -m gardiffmini reproduce --profile $(PROFILE) --seeds 3

clean:
	rm -rf $(BUILD)
