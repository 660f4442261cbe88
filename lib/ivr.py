"""IVR (in-place vocabulary reassignment), shared by 05 select, 06 remap and 07 align: byte-level strings,
a Unigram tokenizer.json's pieces and scores, pre-tokens, protected ids and the remap rules file.

A piece is a string in the byte-level alphabet of GPT-2 (each byte is one character: Ġ = space,
Ċ = newline). A new string can only ever be emitted if it lies inside ONE pre-token, so every new
string must pre-tokenize, on its own, to exactly itself.
"""

import json
from pathlib import Path

import yaml

from lib.files import atomic_path
from lib.log import die
from lib.tokenizer import (
    EOT,
    EOT_ID,
    VOCAB_SIZE,
    is_byte_level,
    load_gpt2_tokenizer,
    piece_bytes,
    to_byte_level,
)
from lib.unigram import lattice, path_score, viterbi

RULE_KEYS = ("id", "old", "new", "text")


# -----------------------------------------------------------------------------
# byte-level strings


def piece_text(piece):
    """Byte-level string -> readable text (bytes that are not UTF-8 on their own become U+FFFD)."""
    if not is_byte_level(piece):
        return piece  # an added token such as <|endoftext|>
    return piece_bytes(piece).decode("utf-8", errors="replace")


# -----------------------------------------------------------------------------
# tokenizers


def read_unigram(tokenizer_dir):
    """(tokenizers.Tokenizer, tokenizer.json as a dict, pieces by id, scores by id) of a GPT-2 Unigram.

    The scores are the float64s tokenizers holds, which can differ from the file's decimals by one ulp
    (its JSON float parser is not always correctly rounded): read back through `to_str`, they are exact.
    """
    tokenizer = load_gpt2_tokenizer(tokenizer_dir, expect_model="Unigram")
    path = Path(tokenizer_dir) / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = json.loads(tokenizer.to_str())["model"].get("vocab")
    if not isinstance(vocab, list) or len(vocab) != VOCAB_SIZE:
        die(
            f"{path}: model.vocab must list {VOCAB_SIZE:,} [piece, score] pairs; re-run the step that wrote it"
        )
    pieces = [p for p, _ in vocab]
    scores = [float(s) for _, s in vocab]
    return tokenizer, data, pieces, scores


# -----------------------------------------------------------------------------
# the score of a new piece: one definition, so 05's prediction is what 06's tokenizer does


def kept_vocab(pieces, removed):
    """{piece: id} of the old pieces that stay beside the new ones: all but the ids given away and
    <|endoftext|> (an added token, never part of a pre-token)."""
    removed = set(removed)
    return {p: i for i, p in enumerate(pieces) if i not in removed and i != EOT_ID}


def bonus_per_saved_token(scores, new_piece_bonus):
    """(B, the largest |old score|): B = new_piece_bonus x the largest |score| of a token other than <|endoftext|>."""
    max_abs = max(abs(s) for i, s in enumerate(scores) if i != EOT_ID) or 1.0
    return new_piece_bonus * max_abs, max_abs


def new_piece_scores(strings, vocab, scores, bonus):
    """The score of each new string c: V(c) + B (k(c) - 1), where the old pieces `vocab` ({piece: id}, see
    kept_vocab) cut c into k(c) pieces of total score V(c) (Unigram's Viterbi, lib/unigram), B = bonus.
    So c beats its own old pieces by B per token saved wherever they occur together, and no other cut changes
    while B stays below the score gaps of the old vocabulary. These are the values 06 writes into tokenizer.json.

        >>> new_piece_scores(["ab"], {"a": 0, "b": 1}, [-1.0, -2.0], 1e-9)
        [-2.999999999]
    """
    max_len = max(map(len, vocab))
    out = []
    for c in strings:
        ids = viterbi(lattice(c, vocab, max_len), scores)
        out.append(path_score(ids, scores) + bonus * (len(ids) - 1))
    return out


def with_rules(data, rules, scores):
    """A copy of a Unigram tokenizer.json (as a dict) whose rule ids carry the new pieces and their scores."""
    import copy

    out = copy.deepcopy(data)
    vocab = out["model"]["vocab"]
    for rule, score in zip(rules, scores):
        vocab[rule["id"]] = [rule["new"], score]
    return out


def count_pretokens(tokenizer, texts, counts):
    """Add the texts' pre-tokens to counts (a Counter), as the model sees them (<|endoftext|> cuts first);
    return the number of <|endoftext|>s (one token each)."""
    n_eot = 0
    for text in texts:
        parts = text.split(EOT)
        n_eot += len(parts) - 1
        for part in parts:
            counts.update(pre_tokens(tokenizer, part))
    return n_eot


def tokens_from_counts(model, counts, n_eot=0):
    """Tokens a tokenizer's model gives text whose distinct pre-tokens are counts ({pre-token: occurrences}):
    what encoding every document gives, since the model sees one pre-token at a time."""
    return sum(f * len(model.tokenize(p)) for p, f in counts.items()) + n_eot


def id_to_piece(tokenizer):
    """Pieces by id of any GPT-2 tokenizer (BPE or Unigram), added tokens included."""
    return [tokenizer.id_to_token(i) for i in range(VOCAB_SIZE)]


def pre_tokens(tokenizer, text):
    """The pre-tokens of `text` (byte-level strings), exactly as the tokenizer's model sees them."""
    if tokenizer.normalizer is not None:
        text = tokenizer.normalizer.normalize_str(text)
    return [p for p, _ in tokenizer.pre_tokenizer.pre_tokenize_str(text)]


def new_string_problem(tokenizer, new, piece_to_id):
    """Why `new` (byte-level) cannot be a new piece, or None. It must be one pre-token on its own."""
    if not isinstance(new, str) or len(new) < 2:
        return "must be a string of at least 2 bytes (single bytes are already tokens)"
    if not is_byte_level(new):
        return "has characters outside the byte-level alphabet (give plain text as `text` instead)"
    if new in piece_to_id:
        return f"is already token id {piece_to_id[new]}"
    try:
        text = piece_bytes(new).decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8 on its own (it cuts a character); new strings must be whole characters"
    parts = pre_tokens(tokenizer, text)
    if parts != [new]:
        shown = " | ".join(repr(piece_text(p)) for p in parts)
        return f"spans {len(parts)} pre-tokens ({shown}), so it could never be emitted"
    return None


# -----------------------------------------------------------------------------
# protected ids


def protected_ids(pieces, protect, where):
    """id -> why it may never be given away: the 256 byte tokens, <|endoftext|>, the config's protect list."""
    piece_to_id = {p: i for i, p in enumerate(pieces)}
    out = {i: "byte token" for i, p in enumerate(pieces) if len(p) == 1}
    out[EOT_ID] = EOT
    for item in protect or []:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            die(f"{where}: protect: {item!r} is neither an id nor a token string")
        if isinstance(item, int):
            if not 0 <= item < len(pieces):
                die(f"{where}: protect: id {item} is outside 0..{len(pieces) - 1}")
            out.setdefault(item, "protect list")
            continue
        i = piece_to_id.get(to_byte_level(item), piece_to_id.get(item))
        if i is None:
            die(
                f"{where}: protect: {item!r} is not a token (give an id, the token's text, or its byte-level form)"
            )
        out.setdefault(i, "protect list")
    return out


# -----------------------------------------------------------------------------
# the remap rules file


def write_rules(path, rules, header):
    """rules: dicts with id, old, new (byte-level) and text (the same string as plain text)."""
    body = yaml.safe_dump(
        {"vocab_size": VOCAB_SIZE, "rules": [{k: r[k] for k in RULE_KEYS} for r in rules]},
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
        width=200,
    )
    with atomic_path(path) as tmp:
        tmp.write_text(header + body, encoding="utf-8")


def load_rules(path, pieces, tokenizer, protected):
    """Read and check the remap rules against the tokenizer they were made for (its pieces by id).

    Dies with one line naming the rule for: an id or string named twice, a protected id, a rule whose
    `old` is not the tokenizer's piece at `id`, a new string that is already a token or spans pre-tokens.
    Returns [{"id", "old", "new", "text"}] in file order.
    """
    path = Path(path)
    if not path.exists():
        die(f"{path} is missing: run `make select` first")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        die(
            f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML ({getattr(e, 'problem', e)})"
        )
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        die(f"{path}: expected `rules:` with a list of {{id, old, new}}; re-run `make select`")
    if data.get("vocab_size", VOCAB_SIZE) != len(pieces):
        die(
            f"{path}: made for vocab_size {data.get('vocab_size')}, the tokenizer has {len(pieces):,}; re-run `make select`"
        )
    piece_to_id = {p: i for i, p in enumerate(pieces)}
    rules, seen_ids, seen_new = [], {}, {}
    for n, rule in enumerate(data["rules"], 1):
        where = f"{path}: rule {n}"
        if not isinstance(rule, dict) or not set(rule) <= set(RULE_KEYS) or "id" not in rule:
            die(
                f"{where}: expected a mapping with keys id, old, new (and optional text), got {rule!r}"
            )
        i = rule["id"]
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(pieces):
            die(f"{where}: id {i!r} is not an id of the tokenizer (0..{len(pieces) - 1})")
        where = f"{path}: rule {n} (id {i})"
        if i in seen_ids:
            die(f"{where}: id {i} is named twice (also rule {seen_ids[i]}); keep one")
        seen_ids[i] = n
        if i in protected:
            die(
                f"{where}: id {i} ({pieces[i]!r}) is protected ({protected[i]}); it may never be given away"
            )
        if "old" in rule and rule["old"] != pieces[i]:
            die(
                f"{where}: old {rule['old']!r} is not the tokenizer's token {pieces[i]!r}: the rules do not match "
                f"this tokenizer; re-run `make select`"
            )
        new, text = rule.get("new"), rule.get("text")
        if new is None and text is None:
            die(f"{where}: no new string (give `new` in byte-level form or `text` as plain text)")
        if text is not None:
            if not isinstance(text, str):
                die(f"{where}: text must be a string, got {text!r}")
            if new is not None and new != to_byte_level(text):
                die(
                    f"{where}: new {new!r} and text {text!r} are not the same string; keep one of them"
                )
            new = to_byte_level(text)
        if new in seen_new:
            die(
                f"{where}: new string {piece_text(new)!r} is named twice (also rule {seen_new[new]}); keep one"
            )
        seen_new[new] = n
        problem = new_string_problem(tokenizer, new, piece_to_id)
        if problem:
            die(f"{where}: new string {piece_text(new)!r} {problem}; remove or change the rule")
        rules.append({"id": i, "old": pieces[i], "new": new, "text": piece_text(new)})
    return rules


# -----------------------------------------------------------------------------
# which strings occur inside which pre-tokens


def contained(texts, strings):
    """For each text (in order), the set of `strings` that occur in it anywhere, overlapping ones included.

    One pass per text: from each start, the window grows only while it is still the prefix of some string,
    so the cost follows the matches, not len(text) x the number of string lengths.
    """
    strings = set(strings)
    prefixes = {s[:n] for s in strings for n in range(1, len(s) + 1)}
    for text in texts:
        found = set()
        for a in range(len(text)):
            for b in range(a + 1, len(text) + 1):
                sub = text[a:b]
                if sub not in prefixes:
                    break
                if sub in strings:
                    found.add(sub)
        yield found
