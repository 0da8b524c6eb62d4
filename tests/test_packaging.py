"""The wheel carries every file the package reads at run time: a user who installs it (not
an editable checkout) gets the shipped weights, the web page and the MathJax script."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked_package_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the package's tracked files")
    out = subprocess.run(["git", "ls-files", "texlens"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    return [f for f in out if not f.endswith(".py")]


def test_wheel_holds_every_tracked_data_file(tmp_path):
    pytest.importorskip("setuptools", reason="builds the wheel without build isolation")
    wanted = _tracked_package_files()
    assert any(f.startswith("texlens/weights/") for f in wanted)
    # A copy of the tracked tree, so the build leaves nothing (build/, *.egg-info) behind.
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("texlens-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in wanted if f not in names]
    assert not missing, f"tracked package files left out of the wheel: {missing}"
