#!/usr/bin/env bash
# Documentation screenshots from the real QGIS desktop, under Xvfb, with the plugin loaded
# from this checkout and a throw-away QGIS profile (the user's own profile is never touched).
#   docs/screenshot_main.png        QGIS with the GroundCast dock and the styled forecast
#   docs/screenshot_timeseries.png  the dock's time-series plot of one point
#   docs/screenshot_report_dialog.png  the Report… dialog
#   docs/screenshot_report.png      page 1 of DEMO_DIR/report.pdf
# Needs `make demo` output. Usage: bash scripts/screenshots.sh [DEMO_DIR (default demo_out)]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO="$(cd "${1:-$ROOT/demo_out}" 2>/dev/null && pwd)" || { echo "screenshots: ${1:-demo_out} not found; run make demo" >&2; exit 1; }
SHOTS="$ROOT/docs"
QGIS_BIN="${QGIS_BIN:-/usr/bin/qgis}"
TIMEOUT_S="${SCREENSHOT_TIMEOUT_S:-300}"

die() { printf 'screenshots: ERROR: %s\n' "$*" >&2; exit 1; }
[[ -f "$DEMO/forecast/forecast.tif" ]] || die "$DEMO/forecast/forecast.tif is missing; run make demo first"
[[ -f "$DEMO/report.pdf" ]] || die "$DEMO/report.pdf is missing; run make demo first"
command -v xvfb-run >/dev/null || die "xvfb-run not found (apt install xvfb)"
command -v pdftoppm >/dev/null || die "pdftoppm not found (apt install poppler-utils)"
[[ -x "$QGIS_BIN" ]] || die "$QGIS_BIN not found"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/plugins" "$TMP/profiles" "$SHOTS"
ln -s "$ROOT" "$TMP/plugins/groundcast"

# QGIS's Python is the system one; the venv adds torch and friends without changing it.
SITE=""
if [[ -x "$ROOT/.venv/bin/python" ]]; then
    SITE="$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
fi

rm -f "$SHOTS/screenshot_main.png" "$SHOTS/screenshot_timeseries.png" "$SHOTS/screenshot_report_dialog.png"
status=0
env QGIS_PLUGINPATH="$TMP/plugins" PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" \
    GROUNDCAST_DEMO="$DEMO" GROUNDCAST_SHOTS="$SHOTS" GROUNDCAST_LOG="$TMP/screenshots.log" \
    timeout --kill-after=20 "$TIMEOUT_S" \
    xvfb-run -a -s "-screen 0 1600x1000x24" \
    "$QGIS_BIN" --nologo --noversioncheck --profiles-path "$TMP/profiles" \
    --code "$ROOT/scripts/screenshots.py" >"$TMP/qgis.out" 2>&1 || status=$?
if [[ -s "$TMP/screenshots.log" ]]; then cat "$TMP/screenshots.log"; fi
if [[ $status -ne 0 ]]; then
    tail -n 30 "$TMP/qgis.out" >&2
    [[ $status -eq 124 ]] && die "QGIS did not finish within ${TIMEOUT_S}s"
    die "QGIS exited with status $status"
fi
for name in screenshot_main screenshot_timeseries screenshot_report_dialog; do
    [[ -s "$SHOTS/$name.png" ]] || die "$SHOTS/$name.png was not written (see the log above)"
done

# The report page as the PDF reader shows it, not as QGIS drew it.
pdftoppm -png -r 110 -f 1 -l 1 -singlefile "$DEMO/report.pdf" "$TMP/report"
mv "$TMP/report.png" "$SHOTS/screenshot_report.png"
echo "screenshots: wrote $SHOTS/screenshot_main.png, screenshot_timeseries.png, screenshot_report_dialog.png, screenshot_report.png"
