# The README's two commands: `make demo` and `make test`. Both set everything up first.
.PHONY: setup demo test lint

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/python -m logscan.app.demo

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

test: setup lint
	.venv/bin/python -m pytest -q
