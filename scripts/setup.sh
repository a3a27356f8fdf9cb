#!/usr/bin/env bash
# Prepare a machine to build, test and run GroundCast:
#   1. Debian packages (QGIS, its Python bindings, the geo stack that shares QGIS's GDAL/PROJ),
#   2. .venv made with --system-site-packages so it sees PyQGIS and those packages,
#   3. the pinned pip requirements, 4. an import check, 5. a stamp so reruns are instant.
# Safe to run again at any time. Usage: bash scripts/setup.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.setup-stamp"
SYS_PY=/usr/bin/python3

APT_PACKAGES=(qgis python3-qgis qgis-providers xvfb poppler-utils python3-venv
              python3-rasterio python3-pyproj python3-fiona python3-matplotlib python3-scipy make)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

# The stamp records what the venv was built from; any change to these files reruns setup.
fingerprint() {
    cat requirements.txt requirements-dev.txt constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1
}

WANT="$(fingerprint)"
if [[ $FORCE -eq 0 && -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    exit 0
fi

# --- 1. Debian packages ---------------------------------------------------------------
missing=()
if command -v dpkg >/dev/null 2>&1; then
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
else
    die "dpkg not found; this script supports Debian/Ubuntu only (see README.md for other systems)"
fi
if [[ ! -x "$SYS_PY" ]] || ! "$SYS_PY" -c 'import qgis.core' >/dev/null 2>&1; then
    # dpkg may list the packages while the bindings are broken; reinstalling is harmless
    [[ ${#missing[@]} -eq 0 ]] && missing=(python3-qgis)
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing Debian packages: ${missing[*]}"
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
        SUDO=(sudo)
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${APT_PACKAGES[@]}"
fi

"$SYS_PY" -c 'import qgis.core' || die "$SYS_PY cannot import qgis.core even after installing python3-qgis"

# --- 2. virtual environment ---------------------------------------------------------------
if [[ ! -x "$PY" ]]; then
    say "creating $VENV (with system site packages, for PyQGIS and Debian's GDAL stack)"
    rm -rf "$VENV"
    "$SYS_PY" -m venv --system-site-packages "$VENV"
fi

# --- 3. pip requirements ----------------------------------------------------------------
say "installing pip requirements"
# The constraints keep numpy < 2: numpy 2 breaks Debian's GDAL bindings and QGIS Processing.
"$PY" -m pip install --quiet -c constraints.txt -r requirements-dev.txt

# Debian's pyproj finds PROJ's data under sys.prefix, which in a venv is the venv, not /usr:
# without this link every run warns "Valid PROJ data directory not found". Same proj.db as QGIS.
BASE_PREFIX="$("$PY" -c 'import sys; print(sys.base_prefix)')"
if [[ -f "$BASE_PREFIX/share/proj/proj.db" && ! -e "$VENV/share/proj" ]]; then
    mkdir -p "$VENV/share"
    ln -s "$BASE_PREFIX/share/proj" "$VENV/share/proj"
fi

# --- 4. verify ---------------------------------------------------------------------------
say "checking imports"
QT_QPA_PLATFORM=offscreen "$PY" - <<'EOF' || die "import check failed (see above)"
import sys

import warnings

import numpy

with warnings.catch_warnings():
    warnings.simplefilter("error")  # "Valid PROJ data directory not found": the link above is missing
    import pyproj  # noqa: F401
from osgeo import gdal_array  # noqa: F401  (fails if numpy does not match GDAL's build)
import qgis.core  # noqa: F401
import rasterio  # noqa: F401
import shapely
import torch

major = int(numpy.__version__.split(".")[0])
if major >= 2:
    sys.exit(f"numpy {numpy.__version__} is installed; GroundCast needs numpy < 2 (see constraints.txt)")
if not shapely.__version__.startswith("2."):
    sys.exit(f"shapely {shapely.__version__} is installed; GroundCast needs shapely 2")
print(f"setup: numpy {numpy.__version__}, torch {torch.__version__}, shapely {shapely.__version__}, "
      f"QGIS {qgis.core.Qgis.QGIS_VERSION}")
EOF

# --- 5. stamp ----------------------------------------------------------------------------
tmp_stamp="$(mktemp "$VENV/.setup-stamp.XXXXXX")"
printf '%s\n' "$WANT" >"$tmp_stamp"
mv -f "$tmp_stamp" "$STAMP"
say "ready ($VENV)"
