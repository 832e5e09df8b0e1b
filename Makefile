# recserve — every step is a make target. `make demo` runs the whole path on a fresh machine;
# `make test` runs the tests (CI runs `bash .ci/run`, which calls `make test`).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= data
ARTIFACTS ?= artifacts
VERSION ?= latest
DATA ?= movielens
# MovieLens' classic demo user; other datasets: the most active user of the bundle
USER_ID ?= $(if $(filter movielens,$(DATA)),196,)
K ?= 10
TRAIN_ARGS ?=
LOADTEST_ARGS ?= --slo-p99-ms 50 --start 100 --factor 1.5 --max-rate 4000 --duration 10
BENCH_ARGS ?=
FAULT_ARGS ?=
SOAK_SECONDS ?= 600
SOAK_RATE ?=
SOAK_ARGS ?=
PYTEST_ARGS ?=
EVAL_ARGS ?=
FEEDBACK_LOG ?= state/feature-log
RETRAIN_ARGS ?=
# torch: without PASSIVE, OpenMP threads spin and a loaded 2-core box trains up to 50x slower.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help install lock data check-data train retrain export serve serve-embedded demo recommend test lint fmt protos clean eval eval-encoders eval-byo eval-external loadtest bench bench-1m bench-gpu eval-value ab-report publish rollback bundles fault soak add-items

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: pyproject.toml requirements/lock.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/lock.txt -e ".[train,eval,dev]"
	@touch $@

install: $(VENV)/.installed  ## create .venv and install recserve with the train and dev extras

lock: install  ## rewrite requirements/lock.txt from the installed environment
	{ sed -n 1,2p requirements/lock.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^recserve' | sed 's/+cpu$$//'; } > requirements/lock.tmp
	mv requirements/lock.tmp requirements/lock.txt

data: install  ## fetch MovieLens-100K, CDNOW and Instacart (checksums verified) -> data/datasets/<name>/
	$(PY) -m training.data fetch --data-dir $(DATA_DIR)

check-data: data  ## validate a dataset and print its summary: make check-data DATA=path/to/shop (or a built-in name)
	$(VENV)/bin/recserve data check $(DATA) --data-dir $(DATA_DIR)

train: data  ## train all models on DATA (default movielens; a folder or built-in name), export ONNX, FAISS -> artifacts/<version>/
	$(PY) -m training train --data $(DATA) --data-dir $(DATA_DIR) --artifacts $(ARTIFACTS) $(TRAIN_ARGS)

retrain: data  ## DATA + logged feedback (FEEDBACK_LOG=state/feature-log) -> a new bundle
	$(PY) -m training.data retrain --data $(DATA) --data-dir $(DATA_DIR) --log-dir $(FEEDBACK_LOG) \
	  --artifacts $(ARTIFACTS) $(RETRAIN_ARGS)

EXT_VENV ?= .venv-external
$(EXT_VENV)/.installed: training/external/requirements.txt
	@test -x $(EXT_VENV)/bin/python || $(PYTHON) -m venv $(EXT_VENV)
	$(EXT_VENV)/bin/python -m pip install -q torch==2.13.0
	$(EXT_VENV)/bin/python -m pip install -q -r training/external/requirements.txt
	@touch $@

eval-external: data $(EXT_VENV)/.installed  ## implicit, Surprise, RecBole (+ SASRec, GRU4Rec) on our splits -> reports/external_baselines{,_instacart}.json
	$(EXT_VENV)/bin/python -m training.external.baselines --data-dir $(DATA_DIR) --out reports/external_baselines.json
	$(EXT_VENV)/bin/python -m training.external.baselines --data instacart --data-dir $(DATA_DIR) \
	  --only implicit,recbole --models ALS,SASRec,GRU4Rec --out reports/external_baselines_instacart.json

export: train  ## export happens inside `train` (ONNX + parity check); kept as an alias

eval-value: data  ## user value on CDNOW vs BG/NBD and Pareto/NBD: reports/value.md + value_*.png
	$(PY) -m training.value report --data-dir $(DATA_DIR) --report-dir reports --tsv $(ARTIFACTS)/value_predictions.tsv

serve: install  ## run the five services as separate processes until Ctrl-C
	$(VENV)/bin/recserve serve --mode split --artifacts $(ARTIFACTS) --version $(VERSION)

serve-embedded: install  ## run the gateway with every stage in-process
	$(VENV)/bin/recserve serve --mode embedded --artifacts $(ARTIFACTS) --version $(VERSION)

demo: train  ## fresh machine -> install, data, train DATA, export, start 5 services, recommend, stop
	$(VENV)/bin/recserve demo --artifacts $(ARTIFACTS) $(if $(USER_ID),--user $(USER_ID)) -k $(K)

publish: install  ## validate a bundle dir and make it live (hot reload): make publish BUNDLE=path/to/<version>
	@test -n "$(BUNDLE)" || { echo "usage: make publish BUNDLE=path/to/<version>" >&2; exit 2; }
	$(VENV)/bin/recserve bundle --artifacts $(ARTIFACTS) publish $(BUNDLE)

rollback: install  ## make the previously live bundle live again (or TO=<version>)
	$(VENV)/bin/recserve bundle --artifacts $(ARTIFACTS) rollback $(if $(TO),--to $(TO))

bundles: install  ## list the bundles under $(ARTIFACTS), the live one marked
	$(VENV)/bin/recserve bundle --artifacts $(ARTIFACTS) list

recommend: install  ## ask a running gateway: make recommend USER_ID=196 K=10
	$(VENV)/bin/recserve recommend --user $(USER_ID) -k $(K)

add-items: install  ## add new items (JSON lines) to a running gateway: make add-items FILE=items.jsonl
	@test -n "$(FILE)" || { echo "usage: make add-items FILE=items.jsonl" >&2; exit 2; }
	$(VENV)/bin/recserve add-items $(FILE)

loadtest: install  ## step-schedule load test of embedded recserve on loopback -> loadtest-results/
	@test -f $(ARTIFACTS)/LATEST || $(MAKE) train
	$(PY) -m loadtest step --launch embedded --artifacts $(ARTIFACTS) --version $(VERSION) \
	  --out loadtest-results $(LOADTEST_ARGS)

fault: install  ## kill -9 each backend under load and restart it: the gateway degrades, never fails -> loadtest-results/fault.{json,md}
	@test -f $(ARTIFACTS)/LATEST || $(MAKE) train
	$(PY) -m loadtest.fault --artifacts $(ARTIFACTS) --version $(VERSION) --out loadtest-results $(FAULT_ARGS)

soak: install  ## split stack at half its capacity (or SOAK_RATE) for SOAK_SECONDS -> loadtest-results/soak.{json,md}
	@test -f $(ARTIFACTS)/LATEST || $(MAKE) train
	$(PY) -m loadtest.soak --artifacts $(ARTIFACTS) --version $(VERSION) --seconds $(SOAK_SECONDS) \
	  $(if $(SOAK_RATE),--rate $(SOAK_RATE)) --out loadtest-results $(SOAK_ARGS)

bench: install  ## plumbing limit vs recserve split/embedded, stage floors, serving floors + overhead targets, FAISS choice -> bench-results/
	@test -f $(ARTIFACTS)/LATEST || $(MAKE) train
	$(PY) -m bench --artifacts $(ARTIFACTS) --version $(VERSION) --out bench-results $(BENCH_ARGS)

BENCH_1M_ARTIFACTS ?= /tmp/artifacts-1m
BENCH_1M_ARGS ?= --systems split,embedded --retrieval-items 0
$(BENCH_1M_ARTIFACTS)/LATEST:
	@test -f $(ARTIFACTS)/LATEST || $(MAKE) train
	$(PY) -m bench.synthetic_bundle --items 1000000 --users 1000000 --out $(BENCH_1M_ARTIFACTS) \
	  --version synthetic-1m --value-from $(ARTIFACTS)

bench-1m: install $(BENCH_1M_ARTIFACTS)/LATEST  ## split/embedded on a synthetic 1M-item, 1M-user bundle vs the MovieLens one -> bench-results-1m/
	$(PY) -m bench --artifacts $(BENCH_1M_ARTIFACTS) --baseline-artifacts $(ARTIFACTS) \
	  --out bench-results-1m $(BENCH_1M_ARGS)

bench-gpu: install  ## ranking: raw ONNX Runtime (run, IO binding, CUDA graph) vs the service over gRPC, CPU and CUDA -> bench-results-gpu/
	@test -f $(ARTIFACTS)/LATEST || $(MAKE) train
	$(PY) -m bench.gpu --artifacts $(ARTIFACTS) --version $(VERSION) --out bench-results-gpu $(BENCH_GPU_ARGS)

eval: data  ## offline evaluation: MovieLens (splits, references, ours 3 ways, tags, 5-fold ratings) -> reports/eval.md; DATA=instacart: next-basket -> reports/eval_instacart.md
	nice $(PY) -m training.evaluate run --data-dir $(DATA_DIR) $(if $(filter-out movielens,$(DATA)),--data $(DATA)) $(EVAL_ARGS)

ENCODER_VARIANTS ?= mean,transformer,transformer+user_seq_time=1,transformer+user_seq_kinds=1,transformer+user_seq_time=1+user_seq_kinds=1
eval-encoders: data  ## user-encoder ablation (mean, transformer, + time gaps / event kinds; served path, session check) -> reports/encoders_$(DATA).json, shown by eval.md / eval_instacart.md
	nice $(PY) -m training.evaluate.encoders --data-dir $(DATA_DIR) --data $(DATA) --encoders $(ENCODER_VARIANTS) --session --out reports/encoders_$(DATA).json
	$(PY) -m training.evaluate report $(if $(filter-out movielens,$(DATA)),--data $(DATA))

eval-byo: data  ## bring your own split: make eval-byo TRAIN=train.tsv TEST=test.tsv [ITEMS=items.csv USERS=users.csv CONFIG=dataset.toml | BYO_DATA=movielens]
	$(PY) -m training.evaluate byo --train $(TRAIN) --test $(TEST) --data-dir $(DATA_DIR) --out $(or $(OUT),runs/eval/byo) \
	  $(if $(ITEMS),--items $(ITEMS)) $(if $(USERS),--users $(USERS)) $(if $(CONFIG),--config $(CONFIG)) $(if $(BYO_DATA),--data $(BYO_DATA))

ab-report: data  ## A/B report from logs: make ab-report EXPOSURES=... FEEDBACK=... EXPERIMENTS=... (none given: MovieLens replay)
	$(PY) -m training.experiments $(if $(EXPOSURES),--exposures $(EXPOSURES) --feedback $(FEEDBACK) --config $(EXPERIMENTS),--simulate --data-dir $(DATA_DIR)) --out reports/ab

test: data  ## lint + the whole test suite (exit code 5, "no tests", counts as failure)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

lint: install  ## ruff check + format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

fmt: install  ## ruff fix + format
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

protos: install  ## regenerate the committed gRPC stubs in recserve/v1/
	$(PY) scripts/gen_protos.py

clean:  ## remove build outputs (keeps data/ and artifacts/)
	rm -rf build *.egg-info .pytest_cache .ruff_cache
