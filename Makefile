# pyiip: `make run` serves a demo on http://127.0.0.1:8000, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= data
SHARED ?= ../shared
PORT   ?= 8000
VALIDATOR_ID := 67352ccc-d1b0-11e1-89ae-279075081939
STAMP  := $(VENV)/.installed-stamp
VENDOR := src/pyiip/static/vendor/leaflet/leaflet.js

.PHONY: run test install system-packages demo lint bench soak fuzz clean viewer wheel

# The viewer's Leaflet: npm ci of viewer/package-lock.json, copied into the package's static files.
$(VENDOR): viewer/package.json viewer/package-lock.json scripts/build-viewer.sh
	scripts/build-viewer.sh

viewer: $(VENDOR)

$(STAMP): pyproject.toml $(VENDOR)
	scripts/system-packages.sh run
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

# dist/: the sdist, and the wheel built from it (setup.py's hook puts the viewer's Leaflet in both).
wheel: $(STAMP)
	$(BIN)/python -m build --outdir dist .

system-packages:
	scripts/system-packages.sh test

# The demo: demo/cube.tif (the astronomy cube, opened first), demo/rgb.tif, demo/cutout.fits
# (a small FITS cube, the example for `pyiip convert`), and the IIIF validator's test image as a
# pyramid under its identifier (listed after demo/: the index lists folders first). About 0.6 GB.
DEMO_SIZE ?= 6144
# CORS=* : make run is a development server, opened by IIIF clients on other origins.
CORS ?= *

$(DATA)/demo/cutout.fits: | $(STAMP)
	@rm -rf $(DATA)/demo/fits  # older demos' 800 MB of FITS bands
	$(BIN)/pyiip demo-data $(DATA)/demo --size $(DEMO_SIZE)

$(DATA)/$(VALIDATOR_ID): | $(STAMP)
	@rm -f $(DATA)/$(VALIDATOR_ID).png  # older demos served a copy of the PNG too
	@if [ -f $(SHARED)/data/iiif-validator/$(VALIDATOR_ID).png ]; then \
	  $(BIN)/pyiip pyramid $(SHARED)/data/iiif-validator/$(VALIDATOR_ID).png $@; \
	else echo "note: $(SHARED)/data/iiif-validator not found, validator image not served"; fi

demo: $(DATA)/demo/cutout.fits $(DATA)/$(VALIDATOR_ID)

run: $(STAMP)
	@if [ "$(DATA)" = data ]; then $(MAKE) --no-print-directory demo; fi
	CORS='$(CORS)' $(BIN)/pyiip serve --root $(DATA) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts fuzz
	$(BIN)/ruff format --check src tests bench scripts fuzz
	$(BIN)/mypy
	$(BIN)/lint-imports

# Every test with the compiled request path (when the install compiled it), then the unit tests
# once more from the Python source of the same modules (PYIIP_PURE=1; docs/performance.md).
test: $(STAMP) system-packages lint
	$(BIN)/python -m pytest -q -p no:cacheprovider
	PYIIP_PURE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

# Side-by-side benchmark against iipsrv (README, "Performance"). QUICK=1: 3 s runs, a smoke test.
# IIPSRV=/path/to/iipsrv.fcgi: the iipsrv to compare against (default Debian's iipimage-server, 1.1).
BENCH_SECONDS ?= 20
BENCH_CONC    ?= 1 8 64
BENCH_SOAK    ?= 600
BENCH_STAMP   := $(VENV)/.bench-stamp

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

bench: $(STAMP) $(BENCH_STAMP)
	scripts/system-packages.sh bench
	$(BIN)/python bench/run.py --conc "$(BENCH_CONC)" $(if $(IIPSRV),--iipsrv "$(IIPSRV)") \
	  $(if $(QUICK),--quick,--seconds $(BENCH_SECONDS) --soak $(BENCH_SOAK))

# Coverage-guided fuzzing (atheris) of the request parsers and of the TIFF reader: FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
FUZZ_STAMP   := $(VENV)/.fuzz-stamp

$(FUZZ_STAMP): | $(STAMP)
	$(BIN)/pip install -q atheris
	touch $@

fuzz: $(STAMP) $(FUZZ_STAMP)
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS)

# Soak: lighttpd + 2 pyiip.fcgi under a mixed wrk load on loopback (README, "Reliability and security").
SOAK_SECONDS ?= 600

soak: $(STAMP) $(DATA)/demo/cutout.fits
	scripts/system-packages.sh bench
	$(BIN)/python scripts/soak.py --seconds $(SOAK_SECONDS) --data $(DATA)

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache viewer/node_modules src/pyiip/static/vendor
	find src -name '*.so' -delete  # the modules mypyc compiled in place
