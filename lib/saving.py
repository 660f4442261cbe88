"""05's measured saving: the remapped tokenizer (as 06 builds it) against GPT-2's BPE on text the selection
never reads, split into whitespace pieces and the rest.

    >>> measured = measure(texts, original, tokenizer, remapped_models(data, pieces, scores, rules, 1e-12, [100]))
"""

import itertools
import json
from collections import Counter

from tqdm import tqdm

from lib.ivr import (
    bonus_per_saved_token,
    count_pretokens,
    kept_vocab,
    new_piece_scores,
    piece_text,
    tokens_from_counts,
    with_rules,
)
from lib.phases import phase
from lib.tokenizer import is_byte_level


def remapped_models(data, pieces, scores, rules, new_piece_bonus, points):
    """{n: the Unigram model of the remapped tokenizer with the first n rules}, built as 06 builds it."""
    from tokenizers import Tokenizer

    phase("remapped tokenizers at the curve points")
    bonus, _ = bonus_per_saved_token(scores, new_piece_bonus)
    new = new_piece_scores(
        [r["new"] for r in rules], kept_vocab(pieces, {r["id"] for r in rules}), scores, bonus
    )
    return {
        n: Tokenizer.from_str(json.dumps(with_rules(data, rules[:n], new[:n]))).model
        for n in points
    }


def is_whitespace_piece(piece):
    """True for a piece of whitespace only (indentation, blank lines): no new token can make it less than one.

    >>> is_whitespace_piece("ĊĠĠĠĠĠĠĠ"), is_whitespace_piece("Ġreturn")
    (True, False)
    """
    return is_byte_level(piece) and piece_text(piece).isspace()


def measure(texts, original, tokenizer, models, batch_docs=256):
    """For each text type: documents, bytes, GPT-2 BPE tokens (encoding every document), {n: remapped tokens}
    (from its distinct pre-tokens: the model sees one pre-token at a time), and the same on its whitespace
    pieces alone ("whitespace": their number, GPT-2's tokens and {n: remapped tokens} on them). Documents are
    read in batches, one pass, so a held-out split of GBs holds one batch and the distinct pre-tokens."""
    phase("measured saving on held-out and out-of-domain text")
    out = []
    for name, docs, source in tqdm(texts, desc="measure", unit="type"):
        counts, gpt2, n_docs, n_bytes, n_eot, docs = Counter(), 0, 0, 0, 0, iter(docs)
        while batch := list(itertools.islice(docs, batch_docs)):
            gpt2 += sum(len(e.ids) for e in original.encode_batch(batch, add_special_tokens=False))
            n_eot += count_pretokens(tokenizer, batch, counts)
            n_docs, n_bytes = (
                n_docs + len(batch),
                n_bytes + sum(len(t.encode("utf-8")) for t in batch),
            )
        space = {p: f for p, f in counts.items() if is_whitespace_piece(p)}
        out.append(
            {
                "name": name,
                "source": source,
                "documents": n_docs,
                "gpt2": gpt2,
                "bytes": n_bytes,
                "tokens": {n: tokens_from_counts(m, counts, n_eot) for n, m in models.items()},
                "whitespace": {
                    "pieces": sum(space.values()),
                    "gpt2": tokens_from_counts(original.model, space),
                    "tokens": {n: tokens_from_counts(m, space) for n, m in models.items()},
                },
            }
        )
    return out


def saving_table(corpus, rows, measured, points):
    """[(n, train predicted saving, [measured saving of each type or None])], all against GPT-2's BPE tokens."""
    out = []
    for n in points:
        after = corpus.tokens_before + corpus.n_eot - rows[n - 1]["cumulative_saving"]
        train = 1 - after / corpus.gpt2_tokens if corpus.gpt2_tokens else None
        out.append(
            (n, train, [1 - m["tokens"][n] / m["gpt2"] if m["gpt2"] else None for m in measured])
        )
    return out


def saving_sources(m, n):
    """(saving on whitespace pieces, saving on the rest, the whitespace ceiling), each as a share of GPT-2's
    tokens on the text, with n reassigned ids. The ceiling is the saving with every whitespace piece one token
    and the rest as GPT-2 cuts it: what new strings of whitespace alone can give."""
    space, total = m["whitespace"], max(m["gpt2"], 1)
    on_space = (space["gpt2"] - space["tokens"][n]) / total
    rest = ((m["gpt2"] - space["gpt2"]) - (m["tokens"][n] - space["tokens"][n])) / total
    return on_space, rest, (space["gpt2"] - space["pieces"]) / total


def curve_points(cfg, rows):
    """The config's curve points that the picks reach, and the number of picks."""
    return [n for n in sorted(set(cfg["curve_points"]) | {len(rows)}) if 0 < n <= len(rows)]


def saving_curve(cfg, rows, tokens_before):
    """(reassigned ids, predicted saving) at the config's curve points and at the end."""
    return [(n, rows[n - 1]["cumulative_saving"] / tokens_before) for n in curve_points(cfg, rows)]
