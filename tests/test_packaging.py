"""The wheel as a user gets it: built from a copy of the tree, installed into a clean venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import logscan
from logscan.parsers import scan_paths_text

REPO = Path(__file__).resolve().parents[1]

# Left out of the copy: the build writes build/ and *.egg-info into the tree it builds, and
# the checkout is shared with people working in it.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def run(*cmd: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=240, cwd=cwd, env=env
    )
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv_and_runs(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    dist = tmp_path / "dist"
    # An absolute path: a bare name like "source" would be looked up on PyPI.
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source.resolve(), cwd=tmp_path)
    [wheel] = dist.glob("logscan-*.whl")
    assert wheel.name.startswith(f"logscan-{logscan.__version__}-"), "pyproject version != __version__"

    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    wanted = {"logscan/py.typed"} | {
        path.relative_to(source).as_posix()
        for pattern in ("logscan/*.py", "logscan/parsers/*.py")
        for path in source.glob(pattern)
    }
    assert "logscan/parsers/__init__.py" in wanted
    assert wanted - packed == set()
    # The C scanner, compiled (this machine has a compiler), with its type stub.
    assert any(name.startswith("logscan/parsers/_postfix_scan.") and name.endswith(".so") for name in packed)
    assert "logscan/parsers/_postfix_scan.pyi" in packed
    me_scan = "logscan/parsers/_mailenable_scan."
    assert any(name.startswith(me_scan) and name.endswith(".so") for name in packed)
    assert "logscan/parsers/_mailenable_scan.pyi" in packed
    assert not any(name.startswith("tests/") for name in packed)

    env_dir = tmp_path / "venv"
    # Without its own pip (ensurepip alone takes ~15 s); this pip installs into it instead.
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel, cwd=tmp_path)

    # cwd is tmp_path, so the checkout is not on sys.path: this is the installed copy.
    done = run(env_dir / "bin" / "logscan", "--version", cwd=tmp_path)
    assert done.stdout.strip() == f"logscan {logscan.__version__} ({scan_paths_text()})"
    assert "postfix: C" in scan_paths_text()
    assert "mailenable: C" in scan_paths_text()
    assert "Python bulk" not in scan_paths_text()
    where = run(python, "-c", "import logscan; print(logscan.__file__)", cwd=tmp_path)
    assert where.stdout.strip().startswith(str(env_dir))
