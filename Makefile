# The two commands a newcomer types: `make course` and `make test`. Everything else is set-up they call.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUILD := build
STAMP := $(VENV)/.installed

.PHONY: course test setup benchmark ingredients clean-build

$(STAMP): requirements/lock.txt requirements/base.in pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/base.in -c requirements/lock.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $(STAMP)

setup: $(STAMP)

course: $(STAMP)
	$(BIN)/python -m anyref.course --out $(BUILD)/course

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

benchmark: $(STAMP)  # re-measure the ingredients and re-train both shipped models (about 1.5 h on 2 cores)
	$(BIN)/python scripts/benchmark_ingredients.py
	cd research && ../$(BIN)/python probe_ingredients.py
	$(BIN)/python scripts/benchmark_text_referring.py --preset mini --steps 12000 --minutes 50 \
		--label "mini v2 ingredients, paper recipe (LoRA r8 on q, v)" --run-dir $(BUILD)/benchmark-text
	$(BIN)/python scripts/benchmark_tasks.py --recipe full-llm --steps 6000 --minutes 30 --run-dir $(BUILD)/benchmark-tasks
	$(BIN)/python scripts/results_table.py --write

ingredients: $(STAMP)  # re-train the shipped miniature ingredients (replaces data/ingredients; about 1 h on 2 cores)
	$(BIN)/anyref pretrain clip --overwrite
	$(BIN)/anyref pretrain sam --overwrite
	$(BIN)/anyref pretrain llava --overwrite
	$(BIN)/anyref pretrain audio --overwrite

clean-build:
	rm -rf $(BUILD)
