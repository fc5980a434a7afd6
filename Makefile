# The README's two commands: `make demo` and `make test`. Both set everything up first.
# `make deb`: the Debian package, dist/logscan_<version>_<arch>.deb, checked by lintian.
.PHONY: setup demo test lint deb

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/python -m logscan.app.demo

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

# Two workers: the slowest tests wait on real servers and clocks (13 min in one process, 8 in two).
test: setup lint
	.venv/bin/python -m pytest -q -n 2

deb: setup
	./scripts/build-deb.sh
	lintian --fail-on error dist/logscan_*.deb
