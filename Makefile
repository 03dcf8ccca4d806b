# One way to do each thing; README.md and .ci/run call these targets.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: dev install test test-rust test-python lint lint-python bench fuzz demo

# Editable install with the reference libraries, for iterating on the code.
dev:
	$(PIP) install --no-build-isolation -e '.[test]'

# Release build of the extension plus the test and benchmark dependencies.
install:
	$(PIP) install '.[test]'

test: install test-rust lint-python test-python

test-rust:
	cargo test --lib

# Python lint needs the test extra (pyflakes), so it runs after install.
lint-python:
	$(PYTHON) -m pyflakes python tests bench scripts

test-python:
	$(PYTHON) -m pytest

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	cargo check --manifest-path fuzz/Cargo.toml --bins

# Benchmarks side by side with the reference libraries; rewrites bench/README.md.
bench:
	$(PYTHON) bench/memory.py
	$(PYTHON) bench/pipeline.py
	$(PYTHON) -m pytest bench --benchmark-enable --benchmark-only \
		--benchmark-json bench/results.json -p no:cacheprovider
	$(PYTHON) bench/report.py bench/results.json bench/README.md

demo: install
	medground run --demo
