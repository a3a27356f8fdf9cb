"""The plugin metadata and the release zip meet what QGIS and its plugin repository expect."""
from __future__ import annotations

import configparser
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Fields the QGIS plugin repository rejects an upload without, plus the ones this plugin relies on.
REQUIRED_FIELDS = (
    "name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
    "repository", "tracker", "homepage", "license", "tags", "category", "icon",
    "experimental", "hasProcessingProvider", "changelog",
)
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
FORBIDDEN_PARTS = {"tests", "__pycache__", ".venv", "bench", ".pytest_cache", ".ruff_cache",
                   ".hypothesis", ".git", "docs", "scripts", ".ci", "dist", "demo_out", ".qgis-settings"}


def parse_metadata(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # QGIS keys are case-sensitive (qgisMinimumVersion)
    parser.read_string(text)
    return parser["general"]


def check_metadata(meta: configparser.SectionProxy) -> None:
    missing = [f for f in REQUIRED_FIELDS if not meta.get(f, "").strip()]
    assert not missing, f"metadata.txt lacks: {missing}"
    assert meta["name"] == "GroundCast"
    assert SEMVER.match(meta["version"]), meta["version"]
    assert re.match(r"^3\.\d+$", meta["qgisMinimumVersion"])
    assert "\n" not in meta["description"].strip(), "description must be one line"
    assert "Contains modified Copernicus EGMS data" in meta["about"]
    for field in ("repository", "tracker", "homepage"):
        assert meta[field].startswith("https://"), field
    assert meta["experimental"] in ("True", "False")
    assert meta["hasProcessingProvider"] in ("yes", "no")


def test_metadata_fields_and_icon():
    meta = parse_metadata((REPO_ROOT / "metadata.txt").read_text(encoding="utf-8"))
    check_metadata(meta)
    icon = REPO_ROOT / meta["icon"]
    assert icon.is_file(), icon
    assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "icon must be a PNG"


def test_engine_version_matches_metadata():
    meta = parse_metadata((REPO_ROOT / "metadata.txt").read_text(encoding="utf-8"))
    init = (REPO_ROOT / "engine" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'__version__\s*=\s*"([^"]+)"', init)
    assert match, "engine/__init__.py has no __version__"
    assert match.group(1) == meta["version"]


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "package.py"), "--out", str(out)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1, f"expected one zip, found {zips} (leftover temp files: {list(out.iterdir())})"
    return zips[0]


def test_zip_name_and_layout(built_zip):
    meta = parse_metadata((REPO_ROOT / "metadata.txt").read_text(encoding="utf-8"))
    assert built_zip.name == f"groundcast-{meta['version']}.zip"
    with zipfile.ZipFile(built_zip) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
    assert {n.split("/", 1)[0] for n in names} == {"groundcast"}
    for required in ("metadata.txt", "__init__.py", "plugin.py", "engine/__init__.py", "LICENSE",
                     "README.md", "requirements.txt", meta["icon"]):
        assert f"groundcast/{required}" in names, required


def test_zip_excludes_development_files(built_zip):
    with zipfile.ZipFile(built_zip) as zf:
        names = zf.namelist()
    offending = [n for n in names
                 if FORBIDDEN_PARTS.intersection(n.rstrip("/").split("/")[1:])
                 or n.endswith((".pyc", ".pyo", ".part"))]
    assert not offending, offending
    top = {n.split("/")[1] for n in names if n.count("/") >= 1 and n.split("/")[1]}
    assert not {"Makefile", "pyproject.toml", "constraints.txt", "requirements-dev.txt"} & top


def test_zip_metadata_is_valid(built_zip):
    with zipfile.ZipFile(built_zip) as zf:
        meta = parse_metadata(zf.read("groundcast/metadata.txt").decode("utf-8"))
        check_metadata(meta)
        assert f"groundcast/{meta['icon']}" in zf.namelist()


def test_package_rebuild_replaces_zip(built_zip):
    # A second build must overwrite in place and leave no temporary files behind.
    before = built_zip.stat().st_size
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "package.py"),
                             "--out", str(built_zip.parent)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in built_zip.parent.iterdir()] == [built_zip.name]
    assert built_zip.stat().st_size == pytest.approx(before, rel=0.05)


def test_plugin_package_imports_lazily(tmp_path):
    # The root __init__ must stay light: importing it may not import plugin.py (and hence qgis).
    (tmp_path / "groundcast").symlink_to(REPO_ROOT, target_is_directory=True)
    code = ("import sys, groundcast; "
            "assert callable(groundcast.classFactory); "
            "heavy = [m for m in sys.modules if m == 'groundcast.plugin' or m.split('.')[0] in "
            "('qgis', 'PyQt5', 'torch')]; "
            "assert not heavy, heavy; "
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
