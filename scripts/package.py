#!/usr/bin/env python3
"""Build dist/groundcast-<version>.zip, installable with QGIS "Plugins > Install from ZIP".

The zip holds one top folder, `groundcast/`, with the plugin only: no tests, benchmarks,
docs, build scripts, caches or virtual environments. Standard library only, so it runs
with any Python 3.
"""
from __future__ import annotations

import argparse
import configparser
import os
import stat
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = "groundcast"

# Top-level files shipped besides the *.py modules.
TOP_FILES = ("metadata.txt", "LICENSE", "README.md", "requirements.txt")
# Top-level folders shipped; any other folder that is a Python package ships too,
# unless it is listed in EXCLUDED_NAMES.
TOP_DIRS = ("engine", "ui", "resources", "i18n")
REQUIRED = ("metadata.txt", "__init__.py", "plugin.py", "engine/__init__.py")

EXCLUDED_NAMES = {
    "tests", "bench", "docs", "scripts", "dist", "build", "demo_out",
    "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", ".venv", ".git", ".ci",
}
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".part")


def read_version(root: Path = ROOT) -> str:
    meta = configparser.ConfigParser(interpolation=None)
    if not meta.read(root / "metadata.txt", encoding="utf-8"):
        raise SystemExit(f"package: {root / 'metadata.txt'} is missing")
    version = meta.get("general", "version", fallback="").strip()
    if not version:
        raise SystemExit("package: metadata.txt has no version in [general]")
    return version


def _skipped(name: str) -> bool:
    # dotfiles (.git, .gitignore, editor swap files) never belong in the plugin
    return name in EXCLUDED_NAMES or name.startswith(".") or name.endswith(EXCLUDED_SUFFIXES)


def collect(root: Path = ROOT) -> list[Path]:
    """Relative paths of the files to ship, sorted."""
    files: list[Path] = []
    for entry in sorted(root.iterdir()):
        if _skipped(entry.name) or entry.is_symlink():
            continue
        if entry.is_file() and (entry.suffix == ".py" or entry.name in TOP_FILES):
            files.append(entry.relative_to(root))
        elif entry.is_dir() and (entry.name in TOP_DIRS or (entry / "__init__.py").is_file()):
            for dirpath, dirnames, filenames in os.walk(entry):
                dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
                for name in sorted(filenames):
                    path = Path(dirpath) / name
                    if not _skipped(name) and not path.is_symlink():
                        files.append(path.relative_to(root))
    missing = [r for r in REQUIRED if Path(r) not in files]
    if missing:
        raise SystemExit(f"package: required plugin files missing: {', '.join(missing)}")
    return files


def build(out_dir: Path, root: Path = ROOT) -> Path:
    version = read_version(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{PLUGIN_DIR}-{version}.zip"
    files = collect(root)
    dirs = sorted({parent for f in files for parent in f.parents if parent != Path(".")})

    # Write beside the target and rename, so an interrupted build never leaves a broken zip.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=".zip.part", dir=out_dir)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp_name, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            now = time.localtime()[:6]
            for d in [Path(".")] + dirs:
                name = PLUGIN_DIR if d == Path(".") else f"{PLUGIN_DIR}/{d.as_posix()}"
                info = zipfile.ZipInfo(name + "/", date_time=now)
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10  # 0x10: MS-DOS directory flag
                zf.writestr(info, "")
            for rel in files:
                src = root / rel
                info = zipfile.ZipInfo.from_file(src, f"{PLUGIN_DIR}/{rel.as_posix()}")
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(info, src.read_bytes())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, final)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    path = build(args.out)
    with zipfile.ZipFile(path) as zf:
        count = sum(1 for n in zf.namelist() if not n.endswith("/"))
    print(f"package: wrote {path} ({count} files, {path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
