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

benchmark: $(STAMP)  # re-measure the ingredients and re-train both shipped models (about 5 h on 2 cores, one at a time)
	$(BIN)/python scripts/benchmark_ingredients.py
	cd research && ../$(BIN)/python probe_ingredients.py
	$(BIN)/python scripts/benchmark_text_referring.py --preset mini --no-locator --steps 40000 --minutes 400 \
		--label "mini v2, paper recipe, 40000-step schedule" --run-dir $(BUILD)/benchmark-text \
		--save-model $(BUILD)/benchmark-text-model
	$(BIN)/python scripts/benchmark_text_referring.py --init-from $(BUILD)/benchmark-text-model --steps 10000 \
		--minutes 60 --lr 5e-4 --warmup 200 --run-dir $(BUILD)/benchmark-text-locator \
		--label "mini v2 + locator: the 40000-step model, then 10000 steps with the locator"
	cd research && ../$(BIN)/python probe_obj_embeddings.py --model ../data/models/anyref-mini-text \
		--out ../data/results/obj_probes.json
	$(BIN)/python scripts/benchmark_tasks.py --no-locator --steps 20000 --minutes 100 --run-dir $(BUILD)/benchmark-tasks \
		--save-model $(BUILD)/benchmark-tasks-model --out $(BUILD)/benchmark-tasks.json
	$(BIN)/python scripts/benchmark_tasks.py --init-from $(BUILD)/benchmark-tasks-model --steps 10000 --minutes 50 \
		--lr 5e-4 --warmup 200 --run-dir $(BUILD)/benchmark-tasks-locator
	$(BIN)/python scripts/results_table.py --write

ingredients: $(STAMP)  # re-train the shipped miniature ingredients (replaces data/ingredients; about 1 h on 2 cores)
	$(BIN)/anyref pretrain clip --overwrite
	$(BIN)/anyref pretrain sam --overwrite
	$(BIN)/anyref pretrain llava --overwrite
	$(BIN)/anyref pretrain audio --overwrite

clean-build:
	rm -rf $(BUILD)
