# Atopos: `make serve` runs the server on SQLite; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= ./data
FUZZ_SECONDS ?= 300

.PHONY: serve test lint typecheck audit pytest fuzz bench lock container clean system-deps

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements.lock
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

serve: $(STAMP)
	$(BIN)/atopos serve --host $(HOST) --port $(PORT) --data $(DATA)

system-deps:
	@scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

# Known vulnerabilities in requirements.lock fail the build; an audit that cannot reach
# PyPI only warns (AUDIT_STRICT=1 makes it fail too). docs/verification.md.
audit: $(STAMP)
	$(BIN)/python scripts/audit_deps.py

# Two worker processes: most tests wait on servers, browsers and networks, not on a core.
pytest: $(STAMP) system-deps
	$(BIN)/pytest -n 2 --dist loadgroup

test: lint typecheck audit pytest

# The fuzz and stateful tests (marked `fuzz`) for FUZZ_SECONDS in all, each test its share,
# in rounds that stop by themselves (tests/conftest.py); `timeout` is only the backstop.
fuzz: $(STAMP) system-deps
	HYPOTHESIS_PROFILE=fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) \
	timeout --signal=INT --kill-after=60 $$(( $(FUZZ_SECONDS) + $(FUZZ_SECONDS) / 5 + 300 )) \
	$(BIN)/pytest -m fuzz -q --timeout=$$(( $(FUZZ_SECONDS) + 600 ))

# The benchmark drives the server with wrk: installed here when missing (as root, with
# apt-get), or one sentence saying how to install it and a non-zero exit.
bench: $(STAMP)
	@scripts/system-deps.sh wrk
	$(BIN)/python bench/secrets.py

# Regenerate the locks after editing the dependencies in pyproject.toml: requirements.lock
# (runtime and dev, for `make`) and requirements-runtime.lock (runtime only, the same
# versions, for production installs and the container image: no test or lint tools).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -c requirements.lock -o requirements-runtime.lock

# The container image (Containerfile) with podman; docs/operations.md. Set BASE to build on
# another Debian bookworm image with Python 3.11.
IMAGE ?= localhost/atopos
container:
	podman build --format docker $(if $(BASE),--build-arg BASE=$(BASE)) -t $(IMAGE) .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
