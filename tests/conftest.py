"""Shared test setup.

The repository root is the plugin folder. Tests reach it two ways:
  * `import engine`: the root is on sys.path, as with `python -m engine`;
  * `import groundcast` / `from groundcast.ui import ...`: the plugin as QGIS loads it,
    through a symlink `groundcast -> repository root` in a temporary folder.
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# pytest-qgis already forces this for its app (pyproject); subprocesses of tests inherit it.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DATA = REPO_ROOT / "tests" / "data"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _expose_plugin_package() -> Path:
    link_parent = Path(tempfile.mkdtemp(prefix="groundcast-pkg-"))
    atexit.register(shutil.rmtree, link_parent, ignore_errors=True)
    (link_parent / "groundcast").symlink_to(REPO_ROOT, target_is_directory=True)
    sys.path.insert(0, str(link_parent))
    return link_parent


PLUGIN_PARENT = _expose_plugin_package()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory) -> Path:
    """A small synthetic demo region (4 km), generated once per test session."""
    from engine.demo import make_demo

    out = tmp_path_factory.mktemp("demo")
    make_demo(out, seed=0, size_km=4.0)
    return out
