"""engine/ must run without QGIS or Qt: from the command line, in CI and inside QGIS tasks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GUI_PREFIXES = ("qgis", "PyQt4", "PyQt5", "PyQt6", "PySide", "PySide2", "PySide6", "sip")

CHECK = """
import importlib, json, pkgutil, sys
import engine
names = sorted(m.name for m in pkgutil.iter_modules(engine.__path__, "engine."))
for name in names:
    if name != "engine.__main__":  # __main__ runs the CLI on import
        importlib.import_module(name)
gui = sorted(m for m in sys.modules if m.split(".")[0].startswith({prefixes!r}))
print(json.dumps({{"modules": names, "gui": gui}}))
"""


def engine_modules() -> list[str]:
    return sorted(f"engine.{p.stem}" for p in (REPO_ROOT / "engine").glob("*.py") if p.stem != "__init__")


def test_engine_imports_no_qgis_or_qt():
    code = CHECK.format(prefixes=GUI_PREFIXES)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # every file in engine/ was seen and imported, so none escapes the check
    assert set(report["modules"]) >= set(engine_modules())
    assert report["gui"] == [], f"engine pulled in GUI modules: {report['gui']}"


def test_engine_sources_have_no_absolute_self_imports():
    # Relative imports keep engine working both as `engine` and as `groundcast.engine`.
    offenders = []
    for path in sorted((REPO_ROOT / "engine").rglob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("from engine", "import engine", "from groundcast", "import groundcast")):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{lineno}: {stripped}")
    assert not offenders, offenders


def test_no_processing_folder_at_root():
    # A top-level `processing` package would shadow QGIS's own Processing plugin.
    assert not (REPO_ROOT / "processing").exists()
