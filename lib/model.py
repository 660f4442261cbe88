"""The GPT-2 that 07 align and 08 train load: which one (01's model_source.json, or --model-name / model_name),
and loading it checked. Weights are never made up: a model whose weights are missing stops the step with one
line that says how to provide them, and names the offline way to try the pipeline (the smoke profile).

    >>> source = model_source(art, cfg["model_name"])     # ModelSource: name, local dir or hub id, smoke?
    >>> model = load_gpt2(source, dtype=torch.float32)    # GPT-2's 50,257 ids, wpe, every weight present
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lib.files import require
from lib.log import die
from lib.paths import WEIGHT_FILES
from lib.tokenizer import VOCAB_SIZE

HOW = (
    "save a GPT-2 with save_pretrained into a directory and pass --model-name DIR (or set model_name in the "
    "step's config); the pipeline never falls back to random weights"
)
OFFLINE = "to try the whole pipeline offline: make all PROFILE=smoke"


@dataclass
class ModelSource:
    name: str  # a save_pretrained directory (resolved) or a hub id
    local: bool  # name is a directory
    hub_reachable: bool  # 01 reached the hub (else: the HF cache only)
    smoke: bool  # the smoke profile's tiny random GPT-2, not GPT-2
    stand_in: str = (
        None  # "smoke" or "mini" (10_pretrain's small GPT-2, pretrained by the kit): not GPT-2
    )


def model_source(art, model_name=None):
    """The model to load: model_name (a flag or the step's config), else what 01 recorded in model_source.json.

    Dies before any loading when 01 recorded the weights as missing, or model_name is a path that is no directory.
    Offline, sets HF_HUB_OFFLINE so that transformers reads the HF cache without retries.
    """
    path = require(art.model_source, "init")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        die(f"{path}: not valid JSON; re-run `make init`")
    name = model_name or record.get("model_name")
    if not name:
        die(f"{path}: no model_name; re-run `make init` or pass --model-name")
    if not model_name and record.get("weights") == "missing":
        die(
            f"{path}: the weights of {name} are not available here; run `make init` with network once, or pass "
            f"--model-name DIR of a save_pretrained GPT-2; {OFFLINE}"
        )
    local = Path(name).expanduser()
    if not local.is_dir() and name.startswith((".", "/", "~")):
        die(f"--model-name {name}: no such directory: {HOW}")
    reachable = bool(record.get("hub_reachable", False))
    if not local.is_dir() and not reachable:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    smoke = bool(record.get("smoke_tiny_random_model")) and not model_name
    stand_in = None if model_name else record.get("stand_in") or ("smoke" if smoke else None)
    if stand_in == "mini" and not local.is_dir():
        die(
            f"{name}: the mini profile's model is not pretrained yet; run `make {name}/model.safetensors "
            f"PROFILE=mini` (10_pretrain, about 30 min on 2 CPU cores)"
        )
    return ModelSource(
        str(local) if local.is_dir() else name, local.is_dir(), reachable, smoke, stand_in
    )


def is_tied(model):
    """True if lm_head.weight is wte.weight (one Parameter), as in GPT-2."""
    head = model.get_output_embeddings()
    return head is not None and head.weight is model.get_input_embeddings().weight


def load_gpt2(source, dtype=None, attn_implementation="default"):
    """The GPT-2 of `source` (a ModelSource), checked: loadable, every weight present (a missing one would be
    random), GPT-2's 50,257 ids and a position embedding. dtype None: the checkpoint's own."""
    from transformers import AutoModelForCausalLM

    kwargs = {"output_loading_info": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation != "default":
        kwargs["attn_implementation"] = attn_implementation
    if source.local:
        if not any((Path(source.name) / f).exists() for f in WEIGHT_FILES):
            die(f"{source.name}: no weights ({', '.join(WEIGHT_FILES[:2])}): {HOW}")
    else:
        kwargs["local_files_only"] = not source.hub_reachable
    try:
        model, info = AutoModelForCausalLM.from_pretrained(source.name, **kwargs)
    except Exception as e:  # OSError, ValueError, ...: the first line says what is missing
        if source.local:
            die(f"{source.name}: not a loadable model ({str(e).splitlines()[0][:120]}): {HOW}")
        where = (
            "loadable from the hub"
            if source.hub_reachable
            else "in the HF cache, and the hub was not reachable at 01"
        )
        die(
            f"weights of {source.name} are not {where}: fetch them where there is network (`hf download {source.name}`, "
            f"then copy the HF cache here), or {HOW}; {OFFLINE}"
        )
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("lm_head.")]
    if missing:
        die(
            f"{source.name}: weights missing for {', '.join(sorted(missing)[:3])}{' ...' if len(missing) > 3 else ''}; "
            f"they would be random. Point --model-name to a complete GPT-2"
        )
    vocab = getattr(model.config, "vocab_size", None)
    if vocab != VOCAB_SIZE or model.get_input_embeddings().weight.shape[0] != VOCAB_SIZE:
        die(
            f"{source.name}: vocab size {vocab} is not GPT-2's {VOCAB_SIZE:,}; IVR keeps GPT-2's 50,257 ids, give a GPT-2 model"
        )
    if not hasattr(model, "transformer") or not hasattr(model.transformer, "wpe"):
        die(f"{source.name}: not a GPT-2 model (no transformer.wpe); give a GPT-2 model")
    return model
