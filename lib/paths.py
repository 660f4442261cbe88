"""Where everything lives. One place, so `--artifacts DIR` (Make: ARTIFACTS=dir) moves every output."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DEFAULT_ARTIFACTS = ROOT / "artifacts"
# The files of a save_pretrained model that hold its weights (any one of them will do).
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


class Artifacts:
    """The artifact tree of one run. Mirrors the Make targets in the Makefile."""

    def __init__(self, root):
        self.root = Path(root)
        self.logs = self.root / "logs"
        # corpora
        self.raw = self.root / "corpora" / "raw"
        self.cleaned = self.root / "corpora" / "cleaned"
        self.train_docs = self.cleaned / "train.jsonl"
        self.heldout_docs = self.cleaned / "heldout.jsonl"
        self.corpus_manifest = self.cleaned / "manifest.json"
        # tokenizers and models
        self.original_tokenizer = self.root / "tokenizers" / "original"
        self.model_source = self.original_tokenizer / "model_source.json"
        self.smoke_model = self.root / "models" / "smoke-tiny-random-gpt2"
        self.mini_model = (
            self.root / "models" / "mini-gpt2"
        )  # 10_pretrain's model (the mini profile)
        self.general_corpus = (
            self.root / "corpora" / "general"
        )  # 10_pretrain's text: not the domain
        self.pretrain_run = self.root / "training" / "pretrain"
        self.distilled_tokenizer = self.root / "tokenizers" / "distilled_unigram"
        self.remapped_tokenizer = self.root / "tokenizers" / "remapped"
        # analysis
        self.reports = self.root / "analysis" / "reports"
        self.bpe_sequences = self.reports / "bpe_token_id_sequences.txt"
        self.token_frequency = self.reports / "token_frequency.parquet"
        self.pretoken_table = self.reports / "pretoken_table.parquet"  # lib/pretokens.py
        self.replacement_candidates = self.reports / "replacement_candidates.csv"
        self.selection_log = self.reports / "selection_log.md"
        self.remap_rules = self.reports / "remap_rules.yaml"
        # embeddings and training
        self.embeddings = self.root / "embeddings"
        self.training = self.root / "training"
        self.sft_checkpoint = self.training / "sft_checkpoint"

    def log_file(self, step):
        return self.logs / f"{step}.log"
