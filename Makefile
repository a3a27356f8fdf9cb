# GroundCast developer targets. `make setup` is near-instant once the venv is current.
PY := .venv/bin/python
QGIS_PLUGINS := $(HOME)/.local/share/QGIS/QGIS3/profiles/default/python/plugins
EGMS_SAMPLE := ../shared/data/egms/EGMS_L2b_022_0845_IW2_VV_2020_2024_1.zip
DEMO := demo_out

.PHONY: setup test demo package install lint screenshots bench clean

setup:
	bash scripts/setup.sh

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

demo: setup
	$(PY) -m engine demo-data --out $(DEMO)/data --seed 0
	$(PY) -m engine forecast --points $(DEMO)/data/EGMS_L2b_demo_2020_2024.csv \
		--dem $(DEMO)/data/dem.tif \
		--geology $(DEMO)/data/geology.gpkg --geology-field unit \
		--soil $(DEMO)/data/soil.gpkg --soil-field soil \
		--aoi $(DEMO)/data/aoi.geojson --out $(DEMO)/forecast
	$(PY) -m engine backtest --points $(DEMO)/data/EGMS_L2b_demo_2020_2024.csv \
		--dem $(DEMO)/data/dem.tif \
		--geology $(DEMO)/data/geology.gpkg --geology-field unit \
		--soil $(DEMO)/data/soil.gpkg --soil-field soil \
		--aoi $(DEMO)/data/aoi.geojson --holdout-days 365 --out $(DEMO)/backtest
	QT_QPA_PLATFORM=offscreen $(PY) scripts/make_project.py $(DEMO)

# Uses the system python if the venv is absent: packaging needs only the standard library.
package:
	@if [ -x $(PY) ]; then $(PY) scripts/package.py; else python3 scripts/package.py; fi

# Symlinks this checkout into the default QGIS profile, so edits show up after a plugin reload.
install:
	mkdir -p "$(QGIS_PLUGINS)"
	@if [ -e "$(QGIS_PLUGINS)/groundcast" ] && [ ! -L "$(QGIS_PLUGINS)/groundcast" ]; then \
		echo "install: $(QGIS_PLUGINS)/groundcast exists and is not a symlink; remove it first" >&2; exit 1; \
	fi
	ln -sfn "$(CURDIR)" "$(QGIS_PLUGINS)/groundcast"
	@echo "installed: $(QGIS_PLUGINS)/groundcast -> $(CURDIR)"

lint: setup
	$(PY) -m ruff check .

screenshots: setup
	bash scripts/screenshots.sh

bench: setup
	$(PY) bench/compare.py --quick --points $(EGMS_SAMPLE) --out bench/out

clean:
	rm -rf dist $(DEMO) bench/out .pytest_cache .ruff_cache .hypothesis .qgis-settings
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
