"""The learning's labelled examples: byte-level pieces with GPT-2's BPE ids and a weight.

Every distinct train pre-token (03's table) cut by the run split, every vocab string (BPE encodes each to
itself) and the generated pre-tokens (lib/generated_examples.py).

    >>> ex = labelled_examples(table, bpe, splitter, cfg, generated)
    >>> ex.items[0]          # (piece, BPE ids, weight)
    ('!', (0,), 1234)
"""

import collections
from dataclasses import dataclass

from tqdm import tqdm

from lib.generated_examples import generated_labels, generated_texts, number_texts
from lib.log import log


@dataclass
class Examples:
    """items [(piece, BPE ids, weight)] sorted; in_train[k]: item k is a train piece; targets[k]: a repair
    may try to fix it (None: all may; generated_use guard makes the generated ones guards only)."""

    items: list
    in_train: list
    targets: list | None
    stats: dict


def split_examples(words, ids, counts, splitter, token_strings, progress=True):
    """Cut each labelled pre-token with the run split: ({(piece, ids): count}, cut-inside-a-token count).
    A pre-token whose ids do not spell it is a table that is not GPT-2's output: counted as a conflict."""
    examples = collections.Counter()
    bad = 0
    for w, y, n in tqdm(
        zip(words, ids, counts),
        total=len(words),
        desc="run split of pre-tokens",
        unit="pt",
        mininterval=1,
        leave=False,
        disable=not progress,
    ):
        pieces = [p for p, _ in splitter.pre_tokenize_str(w)] if splitter else [w]
        j, ok, out = 0, True, []
        for p in pieces:
            start, got = j, ""
            while len(got) < len(p) and j < len(y):
                got += token_strings[y[j]]
                j += 1
            if got != p:
                ok = False
                break
            out.append((p, y[start:j]))
        if not ok or j != len(y):
            bad += n
            continue
        for p, pids in out:
            examples[(p, tuple(pids))] += n
    return examples, bad


def labelled_examples(table, bpe, splitter, cfg, generated) -> Examples:
    """The learning's examples [(piece, BPE ids, weight)]: the train pieces (pre-tokens cut by the run split),
    plus vocab strings (BPE encodes each to itself) and the generated pre-tokens (generated: (pre-tokens,
    their ids)); pieces over learn_max_piece_chars are left out (a lattice costs its length times the longest
    token). bpe: lib.gpt2_bpe.Gpt2Bpe; table: lib.pretokens' table."""
    vocab, token_strings = bpe.vocab, bpe.token_strings
    counts = table.counts.tolist()
    pieces, conflicts = split_examples(
        table.pretokens, table.all_ids(), counts, splitter, token_strings
    )
    vocab_items = sorted(vocab.items(), key=lambda kv: kv[1])
    if cfg["vocab_example_limit"] and cfg["vocab_example_limit"] < len(vocab_items):
        step = len(vocab_items) / cfg["vocab_example_limit"]
        vocab_items = [vocab_items[int(k * step)] for k in range(cfg["vocab_example_limit"])]
    vocab_pieces, vocab_conflicts = split_examples(
        [s for s, _ in vocab_items],
        [(i,) for _, i in vocab_items],
        [1] * len(vocab_items),
        splitter,
        token_strings,
    )
    gen_pieces, gen_conflicts = split_examples(
        generated[0], generated[1], [1] * len(generated[0]), splitter, token_strings
    )
    if conflicts + vocab_conflicts + gen_conflicts:
        log.warning(
            f"the run split cut inside a BPE token {conflicts + vocab_conflicts + gen_conflicts:,} times"
        )
    examples = collections.Counter(pieces)
    for key, n in vocab_pieces.items():
        examples[key] += n * cfg["vocab_weight"]
    for key in gen_pieces:
        examples[key] += cfg["generated_weight"]
    long = {key for key in examples if len(key[0]) > cfg["learn_max_piece_chars"]}
    examples = [(p, y, n) for (p, y), n in sorted(examples.items()) if (p, y) not in long]
    in_train = [(p, y) in pieces for p, y, _ in examples]
    targets = (
        [(p, y) in pieces or (p, y) in vocab_pieces for p, y, _ in examples]
        if cfg["generated_use"] == "guard"
        else None
    )
    stats = {
        "pieces": len(pieces),
        "piece_occurrences": sum(pieces.values()),
        "vocab_strings": len(vocab_pieces),
        "generated_pieces": len(gen_pieces),
        "generated_new": sum(key not in pieces for key in gen_pieces),
        "left_out_long": len(long),
        "split_conflicts": conflicts + vocab_conflicts + gen_conflicts,
    }
    log.info(
        f"{table.meta.get('documents', 0):,} train documents -> {int(table.counts.sum()):,} pre-tokens "
        f"({len(table):,} distinct) -> {len(pieces):,} distinct pieces, + {len(vocab_pieces):,} vocab strings, "
        f"+ {len(gen_pieces):,} generated pieces ({stats['generated_new']:,} not in train)"
        + (
            f"; {len(long):,} pieces over {cfg['learn_max_piece_chars']:,} characters left out"
            if long
            else ""
        )
    )
    return Examples(examples, in_train, targets, stats)


def frequent_tokens(examples, in_train, n):
    """The n tokens used most often in the train pieces' BPE labels (ties by id).

    >>> frequent_tokens([("Ġa", (64,), 3), ("bb", (65, 65), 1)], [True, True], 1)
    [64]
    """
    counts = collections.Counter()
    for (_, y, w), train in zip(examples, in_train):
        if train:
            for i in y:
                counts[i] += w
    return sorted(counts, key=lambda i: (-counts[i], i))[:n]


def make_examples(table, bpe, splitter, cfg) -> Examples:
    """labelled_examples of the table, the vocab strings and the generated strings of the config (seeded)."""
    texts = generated_texts(
        bpe.vocab, cfg["generated_examples"], cfg["seed"], cfg["generated_kinds"]
    )
    generated = generated_labels(
        texts + number_texts(cfg["number_examples_max_digits"]), bpe.original
    )
    return labelled_examples(table, bpe, splitter, cfg, generated)
