"""The config schema of every step, in one place: each key's type, range or choices, default and help.

configs/<step>.yaml is the commented copy users edit; tests/test_config.py fails when a file and its schema
disagree (a missing key, an extra key, another default). lib/config.py checks every layer against these
models (base file, profile overlay, command-line flags) and names the file, line and key of a bad value.

pydantic (already in the lock through transformers' deps, well kept, exact error locations) does the
checking: strict types (a YAML string is never coerced to a number; an int is a float), `extra="forbid"`
for unknown keys, Field bounds for ranges and Literal for choices.

    >>> STEPS["select"](num_reassign=500).num_reassign
    500
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StepConfig(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", validate_default=True)


# --- 01 init
class InitConfig(StepConfig):
    model_name: str = Field(
        "openai-community/gpt2", min_length=1, description="hub id or save_pretrained directory"
    )
    hub_timeout_s: float = Field(
        3.0, gt=0, le=600, description="seconds to wait for the hub before going offline"
    )
    smoke_tiny_model: bool = Field(
        False, description="use a tiny random GPT-2 (NOT GPT-2), for offline smoke runs"
    )
    mini_model: bool = Field(
        False, description="use the mini stand-in pretrained by 10_pretrain (NOT GPT-2)"
    )
    tiny_n_layer: int = Field(2, ge=1, le=48)
    tiny_n_head: int = Field(2, ge=1, le=64)
    tiny_n_embd: int = Field(64, ge=1, le=8192)
    tiny_n_positions: int = Field(256, ge=8, le=65536)
    tiny_seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.smoke_tiny_model and self.mini_model:
            raise ValueError(
                "smoke_tiny_model and mini_model cannot both be true: pick one stand-in model"
            )
        if self.tiny_n_embd % self.tiny_n_head:
            raise ValueError(
                f"tiny_n_embd ({self.tiny_n_embd}) must be a multiple of tiny_n_head ({self.tiny_n_head})"
            )
        return self


# --- 02 corpus
class CorpusConfig(StepConfig):
    source: Literal["auto", "raw", "stdlib"] = Field(
        "auto", description="your files, the stdlib, or auto"
    )
    text_extensions: list[str] = Field(
        [".txt", ".md"], description="file endings read as one document each"
    )
    jsonl_text_field: str = Field("text", min_length=1)
    parquet_text_column: str = Field("text", min_length=1)
    stdlib_include_tests: bool = False
    max_bytes: int = Field(
        0, ge=0, description="stop after this many bytes of kept text; 0 = no cap"
    )
    heldout_ratio: float = Field(0.1, gt=0, lt=1, description="share of documents held out")
    split_seed: int = Field(0, ge=0)
    strict: bool = Field(False, description="stop at the first rejected file")

    @model_validator(mode="after")
    def _extensions_start_with_a_dot(self):
        bad = [e for e in self.text_extensions if not e.startswith(".") or len(e) < 2]
        if bad:
            raise ValueError(f"text_extensions must look like '.py', got {bad}")
        return self


# --- 03 analyze
class AnalyzeConfig(StepConfig):
    batch_docs: int = Field(512, ge=1, description="documents per batch at most")
    batch_bytes: int = Field(1_000_000, ge=1, description="bytes per batch at most")
    encoder: Literal["gigatoken", "tokenizers"] = Field("gigatoken", description="the BPE encoder")
    workers: int = Field(0, ge=0, le=1024, description="worker processes; 0 = one per core")
    check_bytes: int = Field(
        200_000, ge=0, description="bytes of the first documents checked against tokenizers"
    )


# --- 04 distill
OOD_SOURCES = {
    "english_prose": ["/usr/share/common-licenses/*"],
    "markdown": ["/usr/share/doc/**/*.md"],
    "c_headers": ["/usr/include/*.h"],
    "javascript": ["/usr/lib/node_modules/npm/lib/**/*.js", "/usr/share/javascript/**/*.js"],
    "korean": [
        "{stdlib}/test/cjkencodings/cp949-utf8.txt",
        "{stdlib}/test/cjkencodings/euc_kr-utf8.txt",
        "{stdlib}/test/cjkencodings/johab-utf8.txt",
        "/usr/share/locale/ko/LC_MESSAGES/*.mo",
    ],
    "chinese": [
        "{stdlib}/test/cjkencodings/big5-utf8.txt",
        "{stdlib}/test/cjkencodings/gb18030-utf8.txt",
        "{stdlib}/test/cjkencodings/gbk-utf8.txt",
        "/usr/share/locale/zh_CN/LC_MESSAGES/*.mo",
        "/usr/share/locale/zh_TW/LC_MESSAGES/*.mo",
    ],
    "japanese": [
        "{stdlib}/test/cjkencodings/euc_jp-utf8.txt",
        "{stdlib}/test/cjkencodings/shift_jisx0213-utf8.txt",
        "/usr/share/locale/ja/LC_MESSAGES/*.mo",
    ],
    "emoji": ["generated:emoji"],
}


GENERATED_KINDS = (
    "lower",
    "suffixed",
    "camel",
    "capital",
    "upper",
    "upper_words",
    "digits",
    "digit_runs",
    "vocab_pair",
    "script",
)
GeneratedKind = Literal[
    "lower",
    "suffixed",
    "camel",
    "capital",
    "upper",
    "upper_words",
    "digits",
    "digit_runs",
    "vocab_pair",
    "script",
]
# digit_runs is opt-in: it costs learning time and fixes no unseen text (docs/distill.md)
DEFAULT_GENERATED_KINDS = [k for k in GENERATED_KINDS if k != "digit_runs"]


class DistillConfig(StepConfig):
    power: float = Field(4.0, gt=0, le=16, description="exponent of the merge-tree init")
    rank_offset: float = Field(
        10.0, ge=0, le=50000, description="added to every merge rank in the init's weights"
    )
    max_rounds: int = Field(
        10, ge=0, le=1000, description="rounds of greedy repair (0: the init alone)"
    )
    margin_rel: float = Field(
        1.0e-12, gt=2.2e-16, lt=1, description="margin of a repair, relative to the scores"
    )
    repair_group_max_tokens: int = Field(
        1024,
        ge=1,
        le=50_257,
        description="most tokens a group move of the repair "
        "(a token and every token built on it) may hold; 1 = single tokens only",
    )
    vocab_weight: int = Field(1, ge=0, description="weight of each vocab string as an example")
    vocab_example_limit: int = Field(0, ge=0, description="vocab strings used as examples; 0 = all")
    learn_max_piece_chars: int = Field(
        2000, ge=1, description="longer train pieces are left out of the learning"
    )
    generated_examples: int = Field(
        200_000, ge=0, description="strings generated from the vocab and labelled by BPE"
    )
    generated_weight: int = Field(
        1, ge=0, description="weight of each generated pre-token as an example"
    )
    generated_use: Literal["guard", "target"] = Field(
        "target",
        description="generated examples only block repairs that break them, or are repaired too",
    )
    number_examples_max_digits: int = Field(
        4,
        ge=0,
        le=6,
        description="every number of up to this many digits is a generated example (0: none)",
    )
    generated_kinds: list[GeneratedKind] = Field(
        DEFAULT_GENERATED_KINDS, min_length=1, description="kinds of generated strings"
    )
    guard_partners: int = Field(
        256,
        ge=0,
        le=50257,
        description="tokens a moved token is paired with to make guard strings (0: no pair guards)",
    )
    guard_weight: float = Field(
        1.0, ge=0, description="weight of each guard string a repair would turn wrong"
    )
    exact_repair_max_pieces: int = Field(
        200, ge=0, description="wrong train pieces the exact repair tries (0: off)"
    )
    exact_repair_max_tokens: int = Field(
        1024, ge=1, le=50_257, description="most tokens one exact fix may move"
    )
    exact_repair_max_strings: int = Field(
        20_000, ge=1, description="most strings one exact fix's LP may hold"
    )
    greedy_repair_time_limit: float = Field(
        1800.0, gt=0, description="seconds for the greedy repair; no round starts past it"
    )
    exact_repair_time_limit: float = Field(
        300.0, ge=0, description="seconds for the whole exact repair"
    )
    run_split: bool = Field(
        True, description="the Split stage that cuts one-character runs as BPE does"
    )
    run_split_max_len: int = Field(256, ge=64, le=4096)
    train_doc_sample: int = Field(
        2000, ge=1, description="train documents sampled for the per-document figure"
    )
    doc_max_bytes: int = Field(
        8_000_000, ge=1, description="documents over this are left out of document figures"
    )
    eval_batch_bytes: int = Field(
        4_000_000, ge=1, description="held-out and out-of-domain text per batch"
    )
    decode_samples: int = Field(
        100_000, ge=0, description="random id sequences for the decode identity check"
    )
    decode_max_len: int = Field(32, ge=1)
    seed: int = Field(0, ge=0, description="seed of the generated examples (the learning)")
    eval_seed: int = Field(
        0,
        ge=0,
        description="seed of the validation's random text (decode samples, emoji "
        "documents), apart from seed so that re-seeding the learning "
        "is measured on the same text",
    )
    throughput_bytes: int = Field(4_000_000, ge=1)
    throughput_repeats: int = Field(5, ge=1)
    report_examples: int = Field(10, ge=0)
    ood_sources: dict[str, list[str]] = Field(
        OOD_SOURCES, description="out-of-domain text: type -> file globs"
    )
    ood_max_bytes: int = Field(1_000_000, ge=0)
    ood_emoji_docs: int = Field(40, ge=0)
    js_parity: Literal["error", "warn"] = Field(
        "error",
        description="a tokenizers.js difference stops the step "
        "(error) or is only reported, loudly (warn)",
    )
    js_parity_max_bytes: int = Field(
        100_000,
        ge=0,
        description="text per kind (held-out, each out-of-domain "
        "type) encoded by tokenizers.js too; 0 = none",
    )


# --- 11 certify (make certify): it also reads configs/distill.yaml, to rebuild the learning's examples
class CertifyConfig(StepConfig):
    certify_max_pieces: int = Field(
        200, ge=0, description="wrong train pieces checked for a certified conflict"
    )
    certify_neighbours: int = Field(
        1000, ge=0, description="examples sharing its tokens put in each LP"
    )
    certify_unseen_max_pieces: int = Field(
        100, ge=0, description="held-out and out-of-domain pieces still wrong to certify (0: none)"
    )
    certify_case_seconds: float = Field(
        30.0, gt=0, description="HiGHS time for one wrong piece's LP"
    )
    certify_time_limit: float = Field(300.0, ge=0, description="time for the whole certification")


# --- 05 select
class SelectConfig(StepConfig):
    num_reassign: int = Field(2000, ge=0, le=50000, description="how many ids to reassign")
    min_frequency: int = Field(10, ge=1, description="least train occurrences of a new string")
    new_piece_bonus: float = Field(
        1.0e-12, gt=0, description="B / the largest |old score| in a new piece's score"
    )
    max_new_bytes: int = Field(48, ge=2, le=1024, description="longest new string, in bytes")
    give_away_order: Literal["use", "indicator", "both"] = Field(
        "use",
        description="order of the ids to give away: train count, magikarp's under-trained score, or both",
    )
    max_old_count: int = Field(
        0, ge=0, description="never give away an id used more often than this"
    )
    protect: list[int | str] = Field([], description="ids or token texts never given away")
    force: list[str] = Field([], description="strings always added first (plain text)")
    log_top: int = Field(50, ge=0)
    curve_points: list[int] = Field(
        [100, 500, 1000, 2000], description="points of the predicted saving curve"
    )
    per_document_cap: int = Field(
        0,
        ge=0,
        description="rank candidates with each pre-token counted at most this many "
        "times per train document holding it; 0 = raw counts",
    )
    min_documents: int = Field(
        0,
        ge=0,
        description="least train documents holding a new string (an upper bound from "
        "the pre-token table's doc_count); 0 = no floor",
    )
    document_weight: float = Field(
        0.5,
        ge=0,
        le=8,
        description="rank candidates by worth x (documents / train "
        "documents) ** document_weight; 0 = off",
    )
    measure_ood_types: list[str] = Field(
        ["c_headers", "javascript"],
        description="ood_sources types of configs/distill.yaml to measure the selection on",
    )
    measure_sources: dict[str, list[str]] = Field(
        {"python_outside_stdlib": ["{purelib}/**/*.py"]},
        description="more text to measure on: name -> file globs",
    )
    measure_max_bytes: int = Field(
        1_000_000, ge=0, description="bytes read per measured text type; 0 = measure nothing"
    )


# --- 06 remap
class RemapConfig(StepConfig):
    fuzz_texts: int = Field(
        3000, ge=0, description="fuzz texts round-tripped through the IVR tokenizer"
    )
    fuzz_seed: int = Field(0, ge=0)
    curve_points: list[int] = Field(
        [100, 500, 1000, 2000], description="saving curve points (reassigned ids)"
    )
    js_parity: Literal["error", "warn"] = Field(
        "error",
        description="a tokenizers.js difference stops the step "
        "(error) or is only reported, loudly (warn)",
    )
    js_parity_max_bytes: int = Field(
        100_000,
        ge=0,
        description="held-out windows and fuzz texts encoded by tokenizers.js too; 0 = none",
    )
    heldout_batch_chars: int = Field(
        2_000_000, ge=1000, description="held-out characters per encode batch (memory per batch)"
    )

    @model_validator(mode="after")
    def _points_positive(self):
        if any(p < 1 for p in self.curve_points):
            raise ValueError(
                f"curve_points must be ids counts of at least 1, got {self.curve_points}"
            )
        return self


# --- 07 align
INIT_STRATEGIES = (
    "token-distillation",
    "token-distillation-output",
    "subword-mean",
    "adaptivocab",
    "adaptivocab-input",
    "adaptivocab-output",
    "mean",
    "mean-cov",
    "random",
    "zeros",
)
InitStrategy = Literal[
    "token-distillation",
    "token-distillation-output",
    "subword-mean",
    "adaptivocab",
    "adaptivocab-input",
    "adaptivocab-output",
    "mean",
    "mean-cov",
    "random",
    "zeros",
]


class AlignConfig(StepConfig):
    model_name: str | None = Field(None, description="null = the model recorded by 01")
    init_strategy: Literal[
        "best",
        "token-distillation",
        "token-distillation-output",
        "subword-mean",
        "adaptivocab",
        "adaptivocab-input",
        "adaptivocab-output",
        "mean",
        "mean-cov",
        "random",
        "zeros",
    ] = "best"
    seed: int = Field(0, ge=0)
    compare_strategies: list[InitStrategy] = list(INIT_STRATEGIES)
    compare_max_bytes: int = Field(
        100_000, ge=0, description="held-out bytes for the comparison; 0 = all"
    )
    block_size: int = Field(
        512, ge=2, le=65536, description="context of the comparison (capped at n_positions)"
    )
    batch_size: int = Field(8, ge=1, le=4096)
    rank_by: Literal["untrained", "short_finetune"] = Field(
        "short_finetune",
        description="what best ranks by: bits/byte before training, or after a short run",
    )
    short_finetune_steps: int = Field(20, ge=1, le=100_000)
    short_finetune_batch_size: int = Field(4, ge=1, le=4096)
    short_finetune_lr: float = Field(1e-4, gt=0, le=1, description="AdamW's lr of the short run")
    td_init: Literal["subword-mean", "adaptivocab", "mean", "zeros"] = Field(
        "subword-mean", description="rows token distillation starts from"
    )
    td_snippets_per_token: int = Field(
        8, ge=1, le=10_000, description="train snippets holding each new token"
    )
    td_context_tokens: int = Field(
        24, ge=1, le=4096, description="tokens of context either side of the new token in a snippet"
    )
    td_max_train_chars: int = Field(
        0, ge=0, description="train text read for the snippets (characters); 0 = all"
    )
    td_count_chars: int = Field(
        3_000_000,
        ge=1,
        description="train text the continuation shares are counted on (characters)",
    )
    td_general_docs: str = Field(
        "",
        description="general text (jsonl) to distil on as well: relative to the artifacts folder, or "
        "absolute; empty = the domain only",
    )
    td_general_max_chars: int = Field(
        3_000_000, ge=1, description="general text read for its snippets and shares (characters)"
    )
    td_lr: float = Field(1e-3, gt=0, le=1, description="Adam's learning rate on the new rows")
    td_epochs: int = Field(2, ge=1, le=1000, description="passes over the snippets")
    td_batch_size: int = Field(16, ge=1, le=4096, description="snippets per step")
    td_output_weight: float = Field(
        1.0, ge=0, description="token-distillation-output: weight of the next-token KL term"
    )
    td_hidden_weight: float = Field(
        0.0, ge=0, description="token-distillation-output: weight of the hidden-state term"
    )

    @model_validator(mode="after")
    def _best_needs_a_comparison(self):
        if self.init_strategy == "best" and not self.compare_strategies:
            raise ValueError(
                "init_strategy 'best' needs compare_strategies (it picks among them); name a strategy"
            )
        return self

    @model_validator(mode="after")
    def _distillation_has_an_objective(self):
        used = self.init_strategy == "token-distillation-output" or (
            self.init_strategy == "best" and "token-distillation-output" in self.compare_strategies
        )
        if used and not (self.td_output_weight or self.td_hidden_weight):
            raise ValueError(
                "token-distillation-output needs td_output_weight or td_hidden_weight above 0"
            )
        return self


# --- 08 train and 10 pretrain: the keys of the one training loop (lib/train.py)
class LoopConfig(StepConfig):
    max_train_bytes: int = Field(
        24_000_000, ge=0, description="budget in training bytes; 0 = use max_steps"
    )
    max_steps: int = Field(1000, ge=1)
    block_size: int = Field(1024, ge=2, le=65536)
    per_device_batch_size: int = Field(8, ge=1, le=4096)
    grad_accum_steps: int = Field(4, ge=1, le=4096)
    lr: float = Field(1.0e-4, ge=0, le=1.0, description="peak learning rate")
    weight_decay: float = Field(0.1, ge=0, le=1.0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 = no clipping")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    train_params: Literal["all", "embeddings-first"] = "all"
    first_phase_fraction: float = Field(0.1, gt=0, lt=1)
    first_phase_io_layers: bool = False
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    compile: bool = Field(
        False, description="torch.compile the model (reloaded weights are checked)"
    )
    tf32: bool = Field(False, description="CUDA: TF32 matmuls and convolutions for fp32 work")
    fused_adamw: bool = Field(False, description="CUDA: the fused AdamW kernel")
    attn_implementation: Literal["default", "eager", "sdpa", "flash_attention_2"] = Field(
        "default", description="attention kernel asked of transformers; default = its own pick"
    )
    sync_every_step: bool = Field(
        True,
        description="read the loss every step (stops before a NaN update); false: at log intervals",
    )
    seed: int = Field(0, ge=0)
    eval_interval: int = Field(50, ge=0)
    eval_max_bytes: int = Field(0, ge=0)
    eval_batch_size: int = Field(8, ge=1, le=4096)
    checkpoint_interval: int = Field(50, ge=0)
    keep_checkpoints: int = Field(2, ge=1)
    log_interval: int = Field(10, ge=1)


class TrainConfig(LoopConfig):
    model_name: str | None = None


# --- 10 pretrain: the mini profile's stand-in GPT-2, trained from scratch on general text by the same loop
GENERAL_SOURCES = {
    "licenses": ["/usr/share/common-licenses/*"],
    "docs": [
        "/usr/share/doc/**/*.md",
        "/usr/share/doc/**/*.txt",
        "/usr/share/doc/**/README*",
        "/usr/share/info/*.gz",
    ],
    "man_pages": ["/usr/share/man/man[1-8]/*.gz"],
    "c_headers": ["/usr/include/**/*.h"],
    "javascript": ["/usr/lib/node_modules/**/*.js", "/usr/share/javascript/**/*.js"],
    "translations": ["/usr/share/locale/*/LC_MESSAGES/*.mo"],
}


GPU_PRETRAIN = {
    "n_layer": 6,
    "n_head": 6,
    "n_embd": 384,
    "n_positions": 512,
    "block_size": 512,
    "per_device_batch_size": 32,
    "max_bytes_per_source": 40_000_000,
    "max_train_bytes": 400_000_000,
    "lr": 1.0e-3,
    "eval_interval": 500,
    "checkpoint_interval": 500,
    "log_interval": 50,
}


class PretrainConfig(LoopConfig):
    n_layer: int = Field(4, ge=1, le=48)
    n_head: int = Field(2, ge=1, le=64)
    n_embd: int = Field(128, ge=8, le=8192)
    n_positions: int = Field(256, ge=8, le=65536)
    sources: dict[str, list[str]] = Field(
        GENERAL_SOURCES, description="general text: type -> file globs"
    )
    max_bytes_per_source: int = Field(
        2_000_000, ge=1, description="bytes of text per source type at most"
    )
    min_train_bytes: int = Field(
        1_000_000, ge=1, description="stop with an error when less general text is found"
    )
    heldout_ratio: float = Field(0.02, gt=0, lt=1, description="share of documents held out")
    gpu_overrides: dict[str, bool | int | float | str] = Field(
        GPU_PRETRAIN,
        description="keys that replace the above when the run is on a GPU (a larger shape and budget)",
    )
    # the loop's defaults, set for a small model trained from scratch
    max_train_bytes: int = Field(
        3_000_000, ge=0, description="budget in training bytes; 0 = use max_steps"
    )
    block_size: int = Field(256, ge=2, le=65536)
    grad_accum_steps: int = Field(1, ge=1, le=4096)
    lr: float = Field(2.0e-3, ge=0, le=1.0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, le=1.0)
    warmup_fraction: float = Field(0.02, ge=0, lt=1)
    eval_interval: int = Field(200, ge=0)
    eval_max_bytes: int = Field(100_000, ge=0)
    checkpoint_interval: int = Field(200, ge=0)
    log_interval: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _shape_holds(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.block_size > self.n_positions:
            raise ValueError(
                f"block_size ({self.block_size}) must be at most n_positions ({self.n_positions})"
            )
        if not self.sources:
            raise ValueError("sources must name at least one type of general text")
        return self


# --- 09 report
class ReportConfig(StepConfig):
    plot_dpi: int = Field(120, ge=20, le=1200)
    plot_log_x: bool = False
    bytes_tolerance: float = Field(0.05, ge=0, le=1)


# --- make bench
class BenchConfig(StepConfig):
    repeats: int = Field(5, ge=1, le=100)
    step_repeats: int = Field(3, ge=1, le=100)
    scaling_real: bool = True
    scaling_sizes_mb: list[float] = Field([100, 1000], description="repeated-corpus sizes in MB")
    seed: int = Field(0, ge=0)
    gpu_steps: int = Field(20, ge=1)
    gpu_batch_size: int = Field(8, ge=1)
    gpu_block_size: int = Field(1024, ge=2)
    gpu_compile: bool = True

    @model_validator(mode="after")
    def _sizes_positive(self):
        if any(s <= 0 for s in self.scaling_sizes_mb):
            raise ValueError(f"scaling_sizes_mb must be sizes above 0, got {self.scaling_sizes_mb}")
        return self


STEPS = {
    "init": InitConfig,
    "corpus": CorpusConfig,
    "analyze": AnalyzeConfig,
    "distill": DistillConfig,
    "certify": CertifyConfig,
    "select": SelectConfig,
    "remap": RemapConfig,
    "align": AlignConfig,
    "train": TrainConfig,
    "pretrain": PretrainConfig,
    "report": ReportConfig,
    "bench": BenchConfig,
}
