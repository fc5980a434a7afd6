"""The C scanners built with AddressSanitizer and UBSan, and a probe run against them."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path


def build(source: Path, so: Path, *flags: str) -> str:
    """`source` compiled into the extension `so` with ASan and UBSan (any finding aborts); its path."""
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-g", "-O1", "-fsanitize=address,undefined",
         "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", *flags,
         f"-I{sysconfig.get_paths()['include']}", "-o", str(so), str(source)],
        check=True,
    )  # fmt: skip
    return str(so)


def loader(module: str, so: str) -> str:
    """Python source of a probe line binding `m` to the extension `so` loaded as `module`."""
    return (
        "import importlib.machinery, importlib.util\n"
        f"_spec = importlib.util.spec_from_file_location({module!r}, {so!r},\n"
        f"    loader=importlib.machinery.ExtensionFileLoader({module!r}, {so!r}))\n"
        "m = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(m)\n"
    )


def run_probe(probe: str) -> None:
    """Run `probe` (Python source) with libasan preloaded; it must print "ok" with no finding."""
    asan = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(asan).exists(), "gcc's libasan is missing"
    env = {**os.environ, "LD_PRELOAD": asan, "ASAN_OPTIONS": "detect_leaks=0"}
    got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=600)
    assert got.returncode == 0, got.stderr[-3000:]
    assert got.stdout.strip() == "ok"
