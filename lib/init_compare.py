"""Which init strategy: held-out bits per byte of the model carrying each strategy's rows, before any
training (07's init_comparison.json), and a random model of the same shape as the floor.

    >>> comparison = compare_strategies(model, wte, finals, (original, remapped), texts, cfg)
    >>> strategy, why = choose(comparison, cfg)
"""

import time

from lib.evaluate import bits_per_byte
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


def compare_strategies(model, wte, finals, tokenizers, texts, cfg, reference=True):
    """Held-out bits per byte (texts) of the model carrying each candidate matrix, before any training.
    finals: {strategy: its matrix}; tokenizers: (GPT-2's, the remapped one); reference: also score a
    random model of the same shape."""
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
    if reference:
        floor = random_model_reference(model.config, original, texts, block, cfg)
        result["references"] = {"random_init_same_shape": {"label": RANDOM_REFERENCE, **floor}}
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
    """(the strategy of final_wte, why): the configured one, or with `best` the comparison's winner, ranked
    by rank_by: held-out bits per byte before training, or after the short fine-tune."""
    if cfg["compare_strategies"]:
        table = comparison[
            "after_short_finetune" if cfg["rank_by"] == "short_finetune" else "strategies"
        ]
        ranked = sorted(cfg["compare_strategies"], key=lambda s: table[s]["bits_per_byte"])
        untrained = sorted(
            cfg["compare_strategies"], key=lambda s: comparison["strategies"][s]["bits_per_byte"]
        )
        comparison.update(best=ranked[0], configured=cfg["init_strategy"], ranking=ranked)
        comparison["untrained_ranking"] = untrained
        if comparison["smoke_tiny_random_model"]:
            log.info(
                "(tiny random model: this ranking says nothing about GPT-2; it only shows the machinery runs)"
            )
        elif cfg["init_strategy"] not in ("best", ranked[0]):
            log.warning(
                f"warning: on this model {ranked[0]} beats the configured {cfg['init_strategy']} "
                f"({table[ranked[0]]['bits_per_byte']:.4f} vs "
                f"{table.get(cfg['init_strategy'], {}).get('bits_per_byte', float('nan')):.4f} bits/byte)"
            )
    if cfg["init_strategy"] == "best":
        when = (
            "after a short fine-tune" if cfg["rank_by"] == "short_finetune" else "before training"
        )
        return comparison["best"], f"lowest held-out bits per byte of compare_strategies {when}"
    return cfg["init_strategy"], "config"


def short_finetune(model, matrix, tokenizer, data, cfg):
    """Held-out bits per byte after a short fine-tune of a copy of the model carrying matrix (all
    parameters, AdamW at lr `short_finetune_lr`, `short_finetune_steps` steps of `short_finetune_batch_size`
    train blocks, seeded, the same blocks for every strategy): what a strategy is worth once training
    starts. data: (lib.train.Blocks of the train split, held-out texts). The model itself is not touched."""
    import copy

    import torch

    blocks, heldout_texts = data
    student = copy.deepcopy(model)
    with torch.no_grad():
        student.get_input_embeddings().weight.copy_(matrix)  # lm_head is the same Parameter
    student.train()
    optimizer = torch.optim.AdamW(
        student.parameters(), lr=cfg["short_finetune_lr"], weight_decay=0.0
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"])  # dropout draws the same in every strategy's run
        for step in range(cfg["short_finetune_steps"]):
            batch = blocks.batch(step, 0, 0, 1, 1, cfg["short_finetune_batch_size"])
            loss = student(input_ids=batch, labels=batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    student.eval()
    block = min(cfg["block_size"], model.config.n_positions)
    with torch.no_grad():
        return bits_per_byte(student, tokenizer, heldout_texts, block, batch_size=cfg["batch_size"])


def rank_by_short_finetune(model, finals, remapped, texts, cfg):
    """{strategy: held-out bits per byte after short_finetune} for compare_strategies, logged as rows.
    texts: (train texts, held-out texts)."""
    from lib.train import Blocks, token_stream

    # block + 1 tokens a row (the targets shifted by one), within the model's positions
    block = min(cfg["block_size"], model.config.n_positions - 1)
    blocks = Blocks(token_stream(remapped, texts[0]), block, cfg["seed"])
    if blocks.n_blocks < 1:
        die(
            "short fine-tune: the train split holds less than one block; lower block_size in configs/align.yaml"
        )
    out = {}
    for strategy in cfg["compare_strategies"]:
        t0 = time.perf_counter()
        res = short_finetune(model, finals[strategy], remapped, (blocks, texts[1]), cfg)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        log.info(
            f"  {strategy:42s} {res['bits_per_byte']:.4f} bits/byte after {cfg['short_finetune_steps']} "
            f"steps ({res['seconds']} s)"
        )
        out[strategy] = res
    return out
