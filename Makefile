# The README names these targets. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test test-fast lint fmt chaos bench bench-quick clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per set of extras, redone when pyproject.toml changes.
$(VENV)/.stamp-%: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[$(subst +,$(comma),$*)]"
	touch $@

comma := ,

# infinity-emb, the OpenAI-compatible server tests/test_openai_embedder.py talks to, pins
# numpy<2 and an old click: it gets a venv of its own (torch pinned to the CPU build).
INFINITY_VENV ?= .venv-infinity
INFINITY := $(INFINITY_VENV)/.stamp-infinity-emb-0.0.78
$(INFINITY):
	$(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/python -m pip --disable-pip-version-check -q install \
		"torch==2.13.0" "infinity-emb[server,torch]==0.0.78"
	touch $@

install: $(VENV)/.stamp-embedded+flower+test+dev $(INFINITY)

run: $(VENV)/.stamp-embedded
	CAR_DREAM_INTERVAL_SECS=$${CAR_DREAM_INTERVAL_SECS:-10} $(BIN)/car-dream dev

test: $(VENV)/.stamp-embedded+flower+test $(INFINITY)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Unit tests only: every test marked integration (a real server or a process of its own,
# see tests/conftest.py) is left out.
test-fast: $(VENV)/.stamp-embedded+flower+test
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

# tests/chaos is not collected by `make test` (norecursedirs): real redis-servers of its
# own, real workers and beats, faults injected; it ends with a table.
chaos: $(VENV)/.stamp-embedded+flower+test
	$(BIN)/python -m pytest tests/chaos -v $(PYTEST_ARGS)

# benchmarks/ is not part of the suite: its own redis-server, its own numbers (README "Scaling").
bench: $(VENV)/.stamp-embedded+minilm
	$(BIN)/python -m benchmarks.bench $(BENCH_ARGS)

bench-quick: $(VENV)/.stamp-embedded+minilm
	$(BIN)/python -m benchmarks.bench --quick $(BENCH_ARGS)

lint: $(VENV)/.stamp-embedded+flower+test+dev
	$(BIN)/ruff check car_dream tests benchmarks
	$(BIN)/ruff format --check car_dream tests benchmarks
	$(BIN)/mypy

fmt: $(VENV)/.stamp-embedded+flower+test+dev
	$(BIN)/ruff format car_dream tests benchmarks
	$(BIN)/ruff check --fix car_dream tests benchmarks

clean:
	rm -rf $(VENV) $(INFINITY_VENV) .pytest_cache .mypy_cache .ruff_cache
