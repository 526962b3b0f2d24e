# Everything goes through `make install`, which builds .venv from the committed lock file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit integration lock clean benchmark-quality \
	benchmark-serving benchmark-drift deploy stack demo

install: $(STAMP)

# --compile-bytecode writes every package's .pyc once, here: where PYTHONDONTWRITEBYTECODE is set
# (as on this team's machines), Python would otherwise compile Prefect, scikit-learn, MLflow...
# from source in every process it starts (importing them: 17 s -> 7 s).
$(STAMP): requirements.lock pyproject.toml overrides.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --python $(BIN)/python --require-hashes --compile-bytecode requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $@

run: install
	$(BIN)/tickets run

test: install lint typecheck
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# Needs PREFECT_API_URL pointing at a running server (make stack starts one and deploys itself).
deploy: install
	$(BIN)/prefect work-pool create tickets-process --type process --overwrite
	$(BIN)/prefect --no-prompt deploy --all

stack: install
	$(BIN)/python -m deployments.stack

demo: install
	$(BIN)/python -m deployments.demo

benchmark-quality: install
	$(BIN)/python -m benchmarks.quality

benchmark-serving: install
	$(BIN)/python -m benchmarks.serving

benchmark-drift: install
	$(BIN)/python -m benchmarks.drift

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes --quiet \
		--override overrides.txt -o requirements.lock

clean:
	rm -rf $(VENV) .tickets .pytest_cache .mypy_cache .ruff_cache
