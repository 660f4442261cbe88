"""Which init strategy: held-out bits per byte of the model carrying each strategy's rows, before any
training (07's init_comparison.json), and a random model of the same shape as the floor.

    >>> comparison = compare_strategies(model, wte, finals, (original, remapped), texts, cfg)
    >>> strategy, why = choose(comparison, cfg)
"""

import time

from lib.log import die, log
from lib.model import is_tied

RANDOM_REFERENCE = "random init, same shape (GPT-2 tokenizer)"


def scored(label, model, tok, texts, block, cfg):
    """lib/evaluate.py's bits_per_byte of the model on the texts, timed and logged as one row."""
    from lib.evaluate import bits_per_byte

    t0 = time.perf_counter()
    res = bits_per_byte(model, tok, texts, block, batch_size=cfg["batch_size"])
    res["seconds"] = round(time.perf_counter() - t0, 1)
    log.info(
        f"  {label:42s} {res['bits_per_byte']:.4f} bits/byte ({res['tokens']:,} tokens, {res['seconds']} s)"
    )
    return res


def compare_strategies(model, wte, finals, tokenizers, texts, cfg):
    """Held-out bits per byte (texts) of the model carrying each candidate matrix, before any training.
    finals: {strategy: its matrix}; tokenizers: (GPT-2's, the remapped one)."""
    import torch

    original, remapped = tokenizers
    block = min(cfg["block_size"], model.config.n_positions)
    result = {
        "heldout_documents": len(texts),
        "bytes": sum(len(t.encode("utf-8")) for t in texts),
        "block_size": block,
        "strategies": {},
    }
    emb, tied = model.get_input_embeddings().weight, is_tied(model)
    candidates = {
        "gpt2 as is (original tokenizer)": (wte, original),
        "old rows kept (no init)": (wte, remapped),
        **{s: (finals[s], remapped) for s in cfg["compare_strategies"]},
    }
    with torch.no_grad():
        for label, (matrix, tok) in candidates.items():
            emb.data.copy_(matrix)  # in place: lm_head is the same Parameter and follows
            if tied and not torch.equal(model.get_output_embeddings().weight, matrix):
                die("lm_head did not follow wte: the tie is broken in this model")
            result["strategies"][label] = scored(label, model, tok, texts, block, cfg)
        emb.data.copy_(wte)
    # beside "strategies", not in it: choose() ranks those, and this is a floor, not a candidate
    reference = random_model_reference(model.config, original, texts, block, cfg)
    result["references"] = {"random_init_same_shape": {"label": RANDOM_REFERENCE, **reference}}
    return result


def random_model_reference(config, original, texts, block, cfg):
    """Held-out bits per byte of a freshly initialised model of the same shape with GPT-2's tokenizer: the
    floor any model that has learned something must be clearly below (the global RNG is left as it was)."""
    import torch
    from transformers import GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):  # the init draws from the CPU generator only
        torch.manual_seed(cfg["seed"])
        random_model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        return scored(RANDOM_REFERENCE, random_model, original, texts, block, cfg)


def choose(comparison, cfg):
    """(the strategy of final_wte, why): the configured one, or with `best` the comparison's winner."""
    if cfg["compare_strategies"]:
        ranked = sorted(
            cfg["compare_strategies"], key=lambda s: comparison["strategies"][s]["bits_per_byte"]
        )
        comparison.update(best=ranked[0], configured=cfg["init_strategy"])
        if comparison["smoke_tiny_random_model"]:
            log.info(
                "(tiny random model: this ranking says nothing about GPT-2; it only shows the machinery runs)"
            )
        elif cfg["init_strategy"] not in ("best", ranked[0]):
            log.warning(
                f"warning: on this model {ranked[0]} beats the configured {cfg['init_strategy']} "
                f"({comparison['strategies'][ranked[0]]['bits_per_byte']:.4f} vs "
                f"{comparison['strategies'].get(cfg['init_strategy'], {}).get('bits_per_byte', float('nan')):.4f} bits/byte)"
            )
    if cfg["init_strategy"] == "best":
        return comparison["best"], "lowest held-out bits per byte of compare_strategies"
    return cfg["init_strategy"], "config"
