"""Which engine dependencies are missing from QGIS's Python, and how to install them.

Checked with importlib metadata only: importing torch costs seconds and memory, and a
broken install must never stop the plugin from loading.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

LOG_TAG = "GroundCast"
PLUGIN_DIR = Path(__file__).resolve().parent.parent

# (import name, distribution name, lowest major allowed, highest major allowed exclusive)
_CHECKS = [
    ("torch", "torch", None, None),
    ("shapely", "shapely", 2, None),
    ("safetensors", "safetensors", None, None),
    ("rasterio", "rasterio", None, None),
    ("pyproj", "pyproj", None, None),
    ("fiona", "fiona", None, None),
    ("matplotlib", "matplotlib", None, None),
    ("scipy", "scipy", None, None),
    ("numpy", "numpy", None, 2),
]

# Used when requirements.txt is not shipped next to the plugin; keep in step with it.
_FALLBACK_PINS = {
    "numpy": "numpy>=1.22,<2",
    "torch": "torch==2.13.0",
    "safetensors": "safetensors==0.8.0",
    "shapely": "shapely>=2.0,<2.1",
    "rasterio": "rasterio>=1.3,<2",
    "pyproj": "pyproj>=3.4,<4",
    "fiona": "fiona>=1.9,<2",
    "matplotlib": "matplotlib>=3.6,<4",
    "scipy": "scipy>=1.10,<2",
}

# Debian builds these against QGIS's own GDAL/PROJ; pip wheels would load a second GDAL.
# Not shapely: Debian 12's is 1.8 and the engine needs 2.
_APT_PACKAGES = {
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "rasterio": "python3-rasterio",
    "pyproj": "python3-pyproj",
    "fiona": "python3-fiona",
    "matplotlib": "python3-matplotlib",
}


def _major(version: str) -> int:
    match = re.match(r"(\d+)", version)
    return int(match.group(1)) if match else 0


def dependency_problems() -> dict:
    """{distribution name: why it is unusable} for every dependency that is not fine."""
    problems = {}
    for module, dist, low, high in _CHECKS:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            problems[dist] = "not installed"
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue  # importable but without metadata (e.g. a source checkout): trust it
        major = _major(version)
        if low is not None and major < low:
            problems[dist] = f"version {version} found, {low}.x or newer needed"
        elif high is not None and major >= high:
            problems[dist] = f"version {version} found, below {high}.0 needed"
    return problems


def missing_dependencies() -> list:
    """Distribution names of the engine dependencies that are absent or of a wrong version."""
    return list(dependency_problems())


def pinned_requirements() -> dict:
    """{distribution name: requirement line} from requirements.txt, else the built-in pins."""
    pins = dict(_FALLBACK_PINS)
    req = PLUGIN_DIR / "requirements.txt"
    if req.is_file():
        for line in req.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            match = re.match(r"([A-Za-z0-9_.-]+)", line)
            if match:
                pins[match.group(1).lower()] = line
    return pins


def python_executable() -> str:
    """The Python interpreter behind QGIS.

    Inside QGIS sys.executable is often QGIS itself, or whatever `python3` comes first on
    PATH (a pyenv shim, say), so the interpreter of this very prefix and version comes first.
    """
    major, minor = sys.version_info[:2]
    if os.name == "nt":
        names = ["python.exe", f"python{major}.exe", "python3.exe"]
    else:
        names = [f"python{major}.{minor}", f"python{major}"]
    prefixes = []
    for prefix in (sys.exec_prefix, sys.base_exec_prefix):
        prefixes += [Path(prefix) / "bin", Path(prefix)]
    for folder in prefixes:
        for name in names:
            candidate = folder / name
            if candidate.is_file():
                return str(candidate)
    exe = Path(sys.executable or "")
    if exe.name.lower().startswith("python") and exe.is_file():
        return str(exe)
    return "python3"


def is_debian() -> bool:
    return Path("/etc/debian_version").exists()


def _externally_managed() -> bool:
    # PEP 668 (Debian 12+): pip refuses --user installs without this flag.
    try:
        return (Path(sysconfig.get_paths()["stdlib"]) / "EXTERNALLY-MANAGED").exists()
    except (KeyError, OSError):
        return False


def split_missing(missing: list) -> tuple:
    """(apt package names, pip requirement lines) for the given distribution names."""
    pins = pinned_requirements()
    apt, pip = [], []
    for name in missing:
        if is_debian() and name in _APT_PACKAGES:
            apt.append(_APT_PACKAGES[name])
        else:
            pip.append(pins.get(name, name))
    return apt, pip


def pip_arguments(requirements: list) -> list:
    args = [python_executable(), "-m", "pip", "install", "--user"]
    if _externally_managed():
        args.append("--break-system-packages")
    return args + list(requirements)


def _quote(arg: str) -> str:
    if os.name == "nt":
        return f'"{arg}"' if re.search(r'[\s<>|&^"]', arg) else arg
    return f'"{arg}"' if re.search(r"[^A-Za-z0-9_./=@:+-]", arg) else arg


def install_command(missing: list) -> str:
    """The exact command(s) to run in a terminal, one per line (apt first on Debian)."""
    apt, pip = split_missing(missing)
    lines = []
    if apt:
        lines.append("sudo apt install " + " ".join(apt))
    if pip:
        lines.append(" ".join(_quote(a) for a in pip_arguments(pip)))
    return "\n".join(lines)


class PipInstallTask(QgsTask):
    """Runs `pip install --user` in the background; progress follows pip's own steps."""

    messageChanged = pyqtSignal(str)

    def __init__(self, requirements: list):
        super().__init__("GroundCast: installing Python packages", QgsTask.Flag.CanCancel)
        self.requirements = list(requirements)
        self.output = []
        self.error = ""

    def run(self) -> bool:
        args = pip_arguments(self.requirements)
        QgsMessageLog.logMessage("Running: " + " ".join(args), LOG_TAG, Qgis.Info)
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console window on Windows
        try:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    creationflags=flags)
        except OSError as exc:
            self.error = f"Could not start pip ({exc})."
            return False
        # pip prints Collecting, Downloading, Installing: count them for a rough progress.
        steps, expected = 0, 3 * max(len(self.requirements), 1) + 1
        for line in proc.stdout:
            self.output.append(line.rstrip())
            if line.startswith(("Collecting", "Downloading", "Installing", "Successfully")):
                steps += 1
                self.setProgress(min(95.0, 100.0 * steps / expected))
                self.messageChanged.emit(line.strip()[:120])
            if self.isCanceled():
                proc.terminate()
                proc.wait()
                return False
        code = proc.wait()
        QgsMessageLog.logMessage("\n".join(self.output[-200:]), LOG_TAG, Qgis.Info)
        if code != 0:
            tail = [x for x in self.output if x.strip()][-1:] or [f"exit code {code}"]
            self.error = f"pip failed: {tail[0]}"
            return False
        self.setProgress(100.0)
        return True


class MissingPackagesBox:
    """The dock's banner: what is missing, the command that installs it, and an Install button.

    Built lazily as a QGroupBox (`widget`), so this module still imports without Qt widgets.
    `changed` is called after every refresh with the list of missing packages.
    """

    def __init__(self, message_bar=None, on_status=None, changed=None):
        from qgis.PyQt.QtGui import QFont
        from qgis.PyQt.QtWidgets import (
            QApplication,
            QGroupBox,
            QHBoxLayout,
            QLabel,
            QPlainTextEdit,
            QProgressBar,
            QPushButton,
            QVBoxLayout,
        )
        from qgis.PyQt.QtCore import Qt

        self.message_bar = message_bar
        self.on_status = on_status or (lambda text: None)
        self.changed = changed or (lambda missing: None)
        self.missing = []
        self.task = None
        box = QGroupBox("Missing Python packages")
        box.setStyleSheet("QGroupBox { font-weight: bold; color: #8a1c1c; }")
        layout = QVBoxLayout(box)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setStyleSheet("font-weight: normal; color: palette(text);")
        layout.addWidget(self.label)
        self.command = QPlainTextEdit()
        self.command.setReadOnly(True)
        self.command.setFont(QFont("monospace"))
        self.command.setMaximumHeight(96)
        self.command.setStyleSheet("font-weight: normal; color: palette(text);")
        layout.addWidget(self.command)
        row = QHBoxLayout()
        self.install_button = QPushButton("Install")
        self.install_button.setToolTip("Runs the pip command above in the background")
        self.install_button.clicked.connect(self.install)
        copy_button = QPushButton("Copy command")
        copy_button.clicked.connect(lambda: QApplication.clipboard().setText(self.command.toPlainText()))
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        row.addWidget(self.install_button)
        row.addWidget(copy_button)
        row.addWidget(self.progress, 1)
        layout.addLayout(row)
        self.widget = box

    def refresh(self) -> list:
        importlib.invalidate_caches()
        problems = {name: "not installed" for name in missing_dependencies()}
        try:
            problems.update({k: v for k, v in dependency_problems().items() if k in problems})
        except Exception:  # noqa: BLE001 (only used for wording)
            pass
        self.missing = list(problems)
        if self.missing:
            lines = "".join(f"<li><b>{name}</b>: {why}</li>" for name, why in problems.items())
            self.label.setText(
                "GroundCast cannot run until these packages are installed into the Python that QGIS "
                f"uses:<ul style='margin:2px'>{lines}</ul>Run this in a terminal, or press Install "
                "(pip part only), then restart QGIS:")
            self.command.setPlainText(install_command(self.missing))
            _, pip_part = split_missing(self.missing)
            self.install_button.setEnabled(bool(pip_part) and self.task is None)
        self.widget.setVisible(bool(self.missing))
        self.changed(self.missing)
        return self.missing

    def install(self) -> None:
        from qgis.core import QgsApplication

        _, pip_part = split_missing(self.missing)
        if not pip_part or self.task is not None:
            return
        task = PipInstallTask(pip_part)
        task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        task.messageChanged.connect(self.on_status)
        task.taskCompleted.connect(lambda: self._done(True))
        task.taskTerminated.connect(lambda: self._done(False))
        self.task = task
        self.install_button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        QgsApplication.taskManager().addTask(task)

    def _done(self, ok: bool) -> None:
        task, self.task = self.task, None
        self.progress.setVisible(False)
        if self.message_bar is not None:
            if ok:
                self.message_bar.pushMessage("GroundCast", "Python packages installed; restart QGIS to use "
                                             "them.", Qgis.Success, 10)
            elif task is not None and task.error:
                self.message_bar.pushMessage("GroundCast", f"Installing packages failed: {task.error} "
                                             "(details in the log).", Qgis.Critical, 10)
        self.refresh()
