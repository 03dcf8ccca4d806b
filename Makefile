# One way to do each thing; README.md, .ci/run and .pre-commit-config.yaml call these targets.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
CARGO ?= cargo

# The editable install builds the Rust extension; it is rebuilt only when a Rust source or
# the build configuration changed (Python edits take effect without a rebuild).
STAMP := .build/install.stamp
BUILD_INPUTS := $(wildcard rust/*.rs) Cargo.toml Cargo.lock pyproject.toml

.PHONY: dev install test test-rust test-python lint lint-rust lint-python format bench fuzz-check demo

dev: $(STAMP)

$(STAMP): $(BUILD_INPUTS)
	$(PIP) install --no-build-isolation -e '.[test,lint]'
	@mkdir -p $(dir $@) && touch $@

# A release wheel of the extension, as users get it.
install:
	$(PIP) install '.[test,lint]'

test: $(STAMP) test-rust test-python

test-rust:
	$(CARGO) test --lib

test-python: $(STAMP)
	$(PYTHON) -m pytest

lint: lint-rust lint-python

lint-rust:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features python -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --features python --document-private-items
	$(PYTHON) scripts/check_msrv.py
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins

# mypy and stubtest import the package, so they need it installed.
lint-python: $(STAMP)
	$(PYTHON) -m ruff check python tests bench scripts
	$(PYTHON) -m ruff format --check python tests bench scripts
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy.stubtest medground._core

format:
	$(CARGO) fmt
	$(PYTHON) -m ruff check --fix python tests bench scripts
	$(PYTHON) -m ruff format python tests bench scripts

# Benchmarks side by side with the reference libraries; rewrites bench/README.md.
bench: $(STAMP)
	$(PYTHON) bench/memory.py
	$(PYTHON) bench/pipeline.py
	$(PYTHON) bench/realsize_bench.py
	$(PYTHON) -m pytest bench --benchmark-enable --benchmark-only \
		--benchmark-json bench/results.json -p no:cacheprovider
	$(PYTHON) bench/report.py bench/results.json bench/README.md

demo: $(STAMP)
	medground run --demo
