# Everything a fresh Debian bookworm machine needs, then the job.
#   make demo   build a few images from this machine's Debian packages and the
#               project's own test implant, scan them, print the verdicts
#   make test   lint (ruff, mypy --strict), then run the test suite
#   make lint   only the linters
#   make bench  layerhound vs Trivy vs decompression, side by side (bench/compare.py)
#   make fuzz   every fuzz harness for FUZZ_SECONDS (600) each (fuzz/run.py)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the tests and the demo use (rpm, db5.3-util and libalpm13
# build and cross-check the package databases of issue 3; docker-registry and
# apache2-utils' htpasswd run the real registries of the registry tests;
# postgresql's server binaries run the throwaway cluster of the store tests;
# chromium renders the HTML report headless; podman's system service is the
# local engine scanned through the Docker Engine API; e2fsprogs makes the
# filesystem a root walk must not cross; buildah commits images as users do;
# GNU time measures the benchmark's peak memory).
APT_PACKAGES := debootstrap skopeo umoci zstd lz4 bzip2 gzip gcc libc6-dev binutils xz-utils ca-certificates dpkg-dev \
	rpm db5.3-util libalpm13 docker-registry apache2-utils postgresql chromium podman buildah e2fsprogs time
PYTEST_ARGS ?= -n 2

.PHONY: all setup system-deps venv bytecode test demo bench fuzz lint clean

all: test

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip byte-compiles a wheel's modules when it installs them, but not an editable
# install's, and this machine sets PYTHONDONTWRITEBYTECODE: without the
# compileall every command would compile layerhound from source (70 ms of a
# 120 ms --version). A stale .pyc is only ignored, never wrong.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

bytecode: $(VENV)/.installed
	@$(BIN)/python -m compileall -q src

venv: $(VENV)/.installed

setup: system-deps venv bytecode

lint: venv
	$(BIN)/ruff check src tests demo bench fuzz
	$(BIN)/mypy

test: setup
	$(MAKE) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/python demo/demo.py

bench: setup
	$(BIN)/python bench/compare.py

# Every fuzz harness for FUZZ_SECONDS each (make test runs them for 30 s each).
FUZZ_SECONDS ?= 600
fuzz: setup
	$(BIN)/python -m fuzz.run --seconds $(FUZZ_SECONDS) --json fuzz/last-run.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
