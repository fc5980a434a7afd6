"""Only the optional C extensions live here; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # optional: without a compiler logscan installs all the same and scans in pure Python.
        Extension("logscan.parsers._postfix_scan", ["logscan/parsers/_postfix_scan.c"], optional=True),
        Extension("logscan.parsers._exim_scan", ["logscan/parsers/_exim_scan.c"], optional=True),
        Extension("logscan.parsers._mailenable_scan", ["logscan/parsers/_mailenable_scan.c"], optional=True),
        Extension("logscan.core._sketch", ["logscan/core/_sketch.c"], optional=True),
    ]
)
