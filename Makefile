# Everything goes through `make install`, which builds .venv from a committed lock file:
# requirements-dev.lock (the default: runtime plus test and lint tools) or, for the image,
# requirements.lock (`make install LOCK=requirements.lock`: what the service and workers need).
PYTHON ?= python3
LOCK ?= requirements-dev.lock
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
STAMP := $(VENV)/.installed

.PHONY: install run test docs coverage lint format typecheck unit integration lock clean benchmark-quality \
	benchmark-serving benchmark-profiles benchmark-small-tables benchmark-drift benchmark-scale benchmark-faults benchmark-monitoring benchmark-text \
	deploy demo

install: $(STAMP)

# --compile-bytecode writes every package's .pyc once, here: where PYTHONDONTWRITEBYTECODE is set
# (as on this team's machines), Python would otherwise compile Prefect, scikit-learn, MLflow...
# from source in every process it starts (importing them: 17 s -> 7 s).
$(STAMP): $(LOCK) pyproject.toml overrides.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --python $(BIN)/python --require-hashes --compile-bytecode $(LOCK)
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $@

run: install
	$(BIN)/tickets run

# Test files are spread over up to four processes (pytest-xdist; one per core): most integration
# tests wait on servers and subprocesses, so two cores run the suite in about 60% of the time.
# `make coverage` runs the same suite under coverage (about a fifth slower: the tracer) and prints
# the line coverage of core/, serving/, tasks/ and flows/ (pyproject.toml).
PYTEST_PARALLEL := -n auto --maxprocesses 4 --dist loadfile

# mypy (about 50 s from a clean cache) runs beside the tests, which spend much of their time
# waiting on servers; its report is printed after theirs and either failing fails the target.
test: install lint docs
	@types_log=$$(mktemp); $(BIN)/mypy > $$types_log 2>&1 & types=$$!; \
	$(BIN)/pytest $(PYTEST_PARALLEL); tests_status=$$?; \
	wait $$types; types_status=$$?; echo "mypy:"; cat $$types_log; rm -f $$types_log; \
	exit $$(( tests_status || types_status ))

coverage: install
	$(BIN)/pytest $(PYTEST_PARALLEL) --cov --cov-report=term

unit: install
	$(BIN)/pytest $(PYTEST_PARALLEL) tests/unit

integration: install
	$(BIN)/pytest $(PYTEST_PARALLEL) tests/integration

# ruff, then the import rules of .importlinter (core's layers; no Prefect in serving; ...).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The documentation site, strictly: a broken link, a page left out of the navigation or a
# settings reference that does not build fails it (docs/hooks.py writes the reference from
# core/settings.py first). `.venv/bin/mkdocs serve` to browse it while editing.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# What pre-commit runs too (.pre-commit-config.yaml).
format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy

# Needs PREFECT_API_URL pointing at a running server (make run starts one and deploys itself).
# The process pool's deployments; the kubernetes-* ones are deployed from a cluster (README).
PROCESS_DEPLOYMENTS := --name hourly --name every-six-hours --name daily --name manual --name on-event
deploy: install
	$(BIN)/prefect work-pool create tickets-process --type process --overwrite
	$(BIN)/prefect --no-prompt deploy $(PROCESS_DEPLOYMENTS)
	$(BIN)/python -m deployments.notifications

demo: install
	$(BIN)/python -m deployments.demo

benchmark-quality: install
	$(BIN)/python -m benchmarks.quality

benchmark-serving: install
	$(BIN)/python -m benchmarks.serving

benchmark-profiles: install
	$(BIN)/python -m benchmarks.serving_profiles

benchmark-small-tables: install
	$(BIN)/python -m benchmarks.small_tables

benchmark-drift: install
	$(BIN)/python -m benchmarks.drift

benchmark-scale: install
	$(BIN)/python -m benchmarks.scale

benchmark-faults: install
	$(BIN)/python -m benchmarks.faults

benchmark-monitoring: install
	$(BIN)/python -m benchmarks.monitoring

benchmark-text: install
	$(BIN)/python -m benchmarks.text

# Both locks, hash-pinned. The runtime lock starts from the dev lock's pins, so the two agree on
# every package they share.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes --quiet \
		--override overrides.txt -o requirements-dev.lock
	cp requirements-dev.lock requirements.lock
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --quiet \
		--override overrides.txt -o requirements.lock

clean:
	rm -rf $(VENV) .tickets .pytest_cache .mypy_cache .ruff_cache site
