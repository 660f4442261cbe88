"""05's ids to give away: never the protected ones, least used on the train split first, and among equals
those the tokenizer can never emit, then under-trained ones, then late GPT-2 merges.

    >>> give_away, rejected = ids_to_give_away(pieces, cfg, gpt2_counts(table), tokenizer, merged_at_once(path))
"""

import json
from collections import Counter
from pathlib import Path

import numpy as np

from lib.ivr import piece_text, pre_tokens, protected_ids
from lib.log import die, log
from lib.phases import phase
from lib.tokenizer import EOT_ID, VOCAB_SIZE

WHERE = "configs/select.yaml"


INTERMEDIATE_GAP = (
    2  # a token GPT-2 merged into a longer one within this many merges was hardly ever final
)


def gpt2_counts(table):
    """GPT-2 BPE count of every id on the train split: each pre-token's ids times its count (+ <|endoftext|>)."""
    lengths = np.diff(table.ids_offsets)
    weights = np.repeat(table.counts.astype(np.float64), lengths)
    counts = np.rint(np.bincount(table.ids_flat, weights=weights, minlength=VOCAB_SIZE)).astype(
        np.int64
    )
    counts[EOT_ID] += int(table.meta.get("endoftext", 0))
    return counts


def merged_at_once(original_json):
    """id -> the token GPT-2 merged it into at once: its training data (almost) never left it final.

    From the merges of the original tokenizer.json (01), so a GPT-2-family tokenizer of your own is honoured.
    This finds the under-trained tokens of "Fishing for Magikarp" (Land & Bartolo 2024): ` TheNitrome`
    (into ` TheNitromeFan`), `rawdownload`, `InstoreAndOnline`, `embedreportprint`, ...
    """
    model = json.loads(Path(original_json).read_text(encoding="utf-8")).get("model") or {}
    vocab, merges = model.get("vocab"), model.get("merges")
    if model.get("type") != "BPE" or not isinstance(vocab, dict) or not merges:
        die(
            f"{original_json}: no BPE vocab and merges (model type {model.get('type')!r}); 05 reads GPT-2's merges "
            f"from it: re-run `make init`"
        )
    out = {}
    for merge in merges:
        a, b = merge.split(" ") if isinstance(merge, str) else merge
        merged = vocab.get(a + b)
        if merged is None:
            continue
        for part in (a, b):
            if part in vocab and 0 < merged - vocab[part] <= INTERMEDIATE_GAP:
                out.setdefault(vocab[part], a + b)
    return out


def ids_to_give_away(pieces, cfg, old_count, tokenizer, merged, indicator=None):
    """The ids to give, best first: (count, reach, -id, id, why, reason) each; and why the rest may not go.
    Ordered by give_away_order: `use` (train count, then reach, then the latest merge), `indicator` (the
    under-trained score, highest first: undertrained_scores) or `both` (train count, then the score)."""
    phase("ids to give away")
    protected = protected_ids(pieces, cfg["protect"], WHERE)
    rejected_ids = Counter(protected.values())
    model, pool = tokenizer.model, []
    for i, piece in enumerate(pieces):
        if i in protected:
            continue
        if old_count[i] > cfg["max_old_count"]:
            rejected_ids[f"train count above max_old_count ({cfg['max_old_count']:,})"] += 1
            continue
        text = piece_text(piece)
        if "\ufffd" not in text and pre_tokens(tokenizer, text) != [piece]:
            reach, why, detail = 0, "never emitted: its string spans pre-tokens", ""
        elif i in merged:
            reach, why, detail = (
                1,
                "under-trained: GPT-2 merged it into a longer token at once",
                f" ({merged[i]!r})",
            )
        elif [t.id for t in model.tokenize(piece)] != [i]:
            reach, why, detail = 2, "not its own encoding in the distilled tokenizer", ""
        else:
            reach, why, detail = (
                3,
                "late GPT-2 merge: rare in GPT-2's training data",
                f" (id {i:,})",
            )
        pool.append(
            (
                int(old_count[i]),
                reach,
                -i,
                i,
                why,
                f"train count {int(old_count[i]):,}; {why}{detail}",
            )
        )
    order = cfg["give_away_order"]
    if order != "use" and indicator is None:
        die(
            f"{WHERE}: give_away_order {order} needs the model's rows for the under-trained score, and "
            "they could not be loaded; set give_away_order: use, or provide the weights (make init)"
        )
    if order == "use":
        pool.sort()
    elif order == "indicator":
        pool.sort(key=lambda x: (-indicator[x[3]], x[3]))
    else:
        pool.sort(key=lambda x: (x[0], -indicator[x[3]], x[3]))
    n_target = max(cfg["num_reassign"], len(cfg["force"]))
    if len(pool) < n_target:
        die(
            f"{WHERE}: num_reassign {n_target:,} but only {len(pool):,} ids may be given away "
            f"(raise max_old_count or shorten protect)"
        )
    log.info(
        f"ids: {len(protected):,} protected, {len(pool):,} free to give away, taking the first {n_target:,}"
    )
    return pool[:n_target], rejected_ids


def top_principal_direction(matrix, iterations=100):
    """The unit first principal direction of the rows of a matrix (uncentred: the direction every row
    shares), by power iteration from a fixed start, so deterministic unlike a randomised SVD."""
    import torch

    v = torch.ones(matrix.shape[1], dtype=matrix.dtype) / matrix.shape[1] ** 0.5
    for _ in range(iterations):
        v = matrix.T @ (matrix @ v)
        v = v / v.norm()
    return v


def undertrained_scores(unembedding, reference_ids):
    """Magikarp's under-trained indicator (Land & Bartolo 2024) of every id, from the unembedding rows
    alone: with the first principal component removed (the direction every row shares), how close each
    row lies to the mean row of the reference ids (unused_reference: ids training never saw as a final
    token), as 1 - distance / median distance: high for a row training left where unused ones sit.

    Magikarp measures the cosine to that mean; a distance is used here because a row no gradient
    reached (one initialised to the mean of all rows, as transformers' mean_resizing does) is nearly
    zero after the removal, where a cosine says nothing.

        >>> reference = unused_reference(pieces, tokenizer, merged)
        >>> scores = undertrained_scores(model.get_output_embeddings().weight, reference)
    """
    import torch

    u = unembedding.detach().double()
    v = top_principal_direction(u)
    u = u - (u @ v)[:, None] * v[None, :]
    reference = u[torch.tensor(sorted(reference_ids))].mean(0)
    distance = (u - reference[None, :]).norm(dim=1)
    return (1 - distance / distance.median()).tolist()


def unused_reference(pieces, tokenizer, merged):
    """Ids training (almost) never saw as a final token: the tokenizer cannot emit them for their own
    string (never emitted, or not their own encoding), or GPT-2 merged them into a longer token at once
    (merged: merged_at_once). <|endoftext|> and the byte tokens are left out. The indicator's reference."""
    model, out = tokenizer.model, set(merged)
    for i, piece in enumerate(pieces):
        if i == EOT_ID or len(piece) == 1:
            continue
        text = piece_text(piece)
        if "\ufffd" in text:
            continue
        if pre_tokens(tokenizer, text) != [piece] or [t.id for t in model.tokenize(piece)] != [i]:
            out.add(i)
    return sorted(out - {EOT_ID})


def overlap(give_away, indicator, n):
    """How many of the first n ids given away are among the n ids the indicator scores highest."""
    top = set(sorted(range(len(indicator)), key=lambda i: (-indicator[i], i))[:n])
    return sum(g[3] in top for g in give_away[:n])
