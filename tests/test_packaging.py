"""The wheel as a user gets it: built from a copy of the tree, installed into a clean venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import logscan
from logscan.core.aggregate import paths_text
from logscan.parsers import C_SCANNERS

REPO = Path(__file__).resolve().parents[1]
# Every optional C extension: the scanners, and the sketches of the aggregate and the diagnosis.
C_EXTENSIONS = {*C_SCANNERS.values(), "logscan.core._sketch"}

# Left out of the copy: the build writes build/ and *.egg-info into the tree it builds, and
# the checkout is shared with people working in it.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env = clean | (env or {})
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=240, cwd=cwd, env=env
    )
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_sdist_installs_with_and_without_a_compiler_and_counts_the_same(tmp_path: Path) -> None:
    """What a user's pip gets: the sdist, built into a wheel where a compiler exists (C scanners) and
    where none does (CC=false, as on Windows without MSVC: pure Python, same counts), each installed
    into a clean venv."""
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    sdist_dir = tmp_path / "sdist"
    run(sys.executable, "-m", "build", "--sdist", "-o", sdist_dir, source, cwd=tmp_path)
    [sdist] = sdist_dir.glob("logscan-*.tar.gz")
    assert sdist.name == f"logscan-{logscan.__version__}.tar.gz", "pyproject version != __version__"
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for module in C_EXTENSIONS:
        stem = module.replace(".", "/")
        assert {stem + ".c", stem + ".pyi"} <= in_sdist, f"{module}: C source or stub missing from the sdist"

    logs = REPO / "sample_logs"
    samples = [logs / "postfix/mail.log", logs / "exim/mainlog", logs / "mailenable/SMTP-Activity-261128.log"]
    reference = [run(sys.executable, "-m", "logscan", "scan", "--json", s, cwd=REPO).stdout for s in samples]
    for compiler in ("cc", "false"):
        dist = tmp_path / f"dist-{compiler}"
        env = {"CC": compiler, "LDSHARED": f"{compiler} -shared"}
        run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, sdist, cwd=tmp_path, env=env)
        [wheel] = dist.glob("logscan-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            packed = set(archive.namelist())
        wanted = {"logscan/py.typed"} | {
            path.relative_to(source).as_posix()
            for pattern in ("logscan/*.py", "logscan/*/*.py", "logscan/*/*.pyi")
            for path in source.glob(pattern)
        }
        assert "logscan/parsers/__init__.py" in wanted
        assert wanted - packed == set()
        assert not any(name.startswith("tests/") for name in packed)
        built = {name.split(".")[0].replace("/", ".") for name in packed if name.endswith(".so")}
        assert built == (C_EXTENSIONS if compiler == "cc" else set())

        env_dir = tmp_path / f"venv-{compiler}"
        # Without its own pip (ensurepip alone takes ~15 s); this pip installs into it instead.
        venv.EnvBuilder(with_pip=False).create(env_dir)
        python = env_dir / "bin" / "python"
        run(sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel, cwd=tmp_path)
        # cwd is tmp_path, so the checkout is not on sys.path: this is the installed copy.
        where = run(python, "-c", "import logscan; print(logscan.__file__)", cwd=tmp_path)
        assert where.stdout.strip().startswith(str(env_dir))
        version = run(env_dir / "bin" / "logscan", "--version", cwd=tmp_path).stdout.strip()
        if compiler == "cc":  # the same build as this checkout's
            assert version == f"logscan {logscan.__version__} ({paths_text()})"
        assert version.endswith(", sketches: C)" if compiler == "cc" else ", sketches: Python)"), version
        for fmt in C_SCANNERS:  # without a compiler: Python bulk, or line by line where that is faster
            assert (f"{fmt}: C" in version) == (compiler == "cc"), version
        # Either path counts the same: a C scanner is only a faster way to the same rows.
        got = [run(env_dir / "bin" / "logscan", "scan", "--json", s, cwd=tmp_path).stdout for s in samples]
        assert got == reference
