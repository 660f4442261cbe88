"""Token distillation (Dobler et al., ICLR 2026): learn each new token's row so that the model behaves
with the one new token as it does on the old multi-token split of the same text.

The teacher is the model itself on GPT-2's tokens (the original tokenizer and rows): every new string of
IVR is a sequence of GPT-2 tokens today, so no donor model is needed. The student is the same model on
the remapped tokenizer's ids, with only the new rows trainable; every other parameter stays as it is.
Both see the same train snippets; positions are compared where both tokenizations end on the same
character (`aligned`).

Two terms, weighted by Settings:
  hidden (the paper's)  the mean squared distance of the last hidden states (after the final layer norm)
                        at the aligned positions from the first new token on: the state the output layer
                        reads, so the predictions after the new token become those after its old pieces.
                        Earlier layers are left free to represent the new token their way.
  output                KL(teacher || student) of the next-token distributions at every aligned position,
                        the teacher's mapped onto the remapped vocabulary (`mapped_teacher`). GPT-2 ties
                        lm_head to wte, so a new row is also its token's output row; the hidden term
                        never looks at that side, and a row fit to the input alone over-predicts its token
                        everywhere. The KL gives the row its negatives: at every position it is told how
                        likely the new string is there (the teacher's probability of its first piece,
                        times how often that piece goes on as the new string), not only where it occurs.

    >>> snippets = collect_snippets(texts, (original, remapped), new_ids, sizes=(16, 32, 1024))
    >>> vocab = vocab_of(reassigned, original, snippets, vocab_size=50257)
    >>> rows, log = distill_rows(model, wte, new_ids, init, snippets, settings, vocab)
"""

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

MONITOR = 512  # snippets the objective is reported on, each epoch


@dataclass
class Snippet:
    """One text window holding a new token, in both tokenizations: the student's (remapped) and the
    teacher's (original) ids; the aligned positions (same end character); the student position of the
    first new token; and each new token whose start and end are boundaries of both, as (student position
    q, teacher positions a..b-1 of its old pieces), a > 0 so that the teacher predicts them; and the
    position of the token the window was cut around, which `continuations` leaves out of its counts."""

    student: list
    teacher: list
    aligned: list  # [(student position, teacher position)]
    first: int
    new_at: list  # [(q, a, b)]
    focus: int = -1  # student position of the new token the window was cut around (-1: none)
    kind: int = 0  # the text it was cut from: 0 the domain, 1 general text (td_general_docs)


@dataclass
class Settings:
    """lr, epochs, batch_size and seed of the optimisation; the weights of the hidden-state and the
    output-side terms."""

    lr: float
    epochs: int
    batch_size: int
    seed: int
    output_weight: float = 0.0
    hidden_weight: float = 1.0


@dataclass
class Vocab:
    """What maps the teacher's next-token distribution onto the remapped vocabulary: the new ids, each
    one's first and second GPT-2 pieces (-1: none), the log-probability that text going on with the first
    piece (log_rest), or with the first two (log_rest2), goes on as the new token (counted on the
    snippets of each kind of text: `continuations`, [kinds, new ids]), and which ids were given away
    (their old strings are no tokens of the student)."""

    new_ids: torch.Tensor
    first_piece: torch.Tensor
    log_rest: torch.Tensor
    given_away: torch.Tensor  # bool, one per id
    second_piece: torch.Tensor | None = None
    log_rest2: torch.Tensor | None = None


def ends(offsets):
    """The end character of each token: [(start, end)] offsets to their ends."""
    return [end for _, end in offsets]


def aligned_positions(s_offsets, t_offsets):
    """(the (student, teacher) positions whose tokens end on the same character, {end: teacher position})
    of two tokenizations' offsets of one text."""
    teacher_at = {end: j for j, end in enumerate(ends(t_offsets))}
    aligned = [(q, teacher_at[end]) for q, end in enumerate(ends(s_offsets)) if end in teacher_at]
    return aligned, teacher_at


def snippet_of(text, original, remapped, new_ids, focus_char=None):
    """A Snippet of text, or None when the remapped tokenizer emits no new token in it. focus_char: where
    the token the window was cut around starts."""
    s = remapped.encode(text, add_special_tokens=False)
    t = original.encode(text, add_special_tokens=False)
    s_ids, s_offsets, t_offsets = s.ids, s.offsets, t.offsets  # one list each, not one per access
    first = next((q for q, i in enumerate(s_ids) if i in new_ids), None)
    if first is None:
        return None
    aligned, teacher_at = aligned_positions(s_offsets, t_offsets)
    starts = {start: j for j, (start, _) in enumerate(t_offsets)}
    new_at = []
    for q, i in enumerate(s_ids):
        a, end = starts.get(s_offsets[q][0]), s_offsets[q][1]
        if i in new_ids and q > 0 and a and end in teacher_at:
            new_at.append((q, a, teacher_at[end] + 1))
    focus = next((q for q, (start, _) in enumerate(s_offsets) if start == focus_char), -1)
    return Snippet(list(s_ids), list(t.ids), aligned, first, new_at, focus)


def collect_snippets(texts, tokenizers, new_ids, sizes, max_chars=0, kind=0):
    """Up to per_token snippets for each new id: windows of about `context` tokens either side of the
    id's occurrences in texts (document order, so the same texts give the same snippets), re-encoded by
    both tokenizers (GPT-2's, the remapped one); a window whose old tokens exceed max_tokens (the model's
    positions) is left out. sizes: (per_token, context, max_tokens). max_chars > 0 stops reading texts
    after that many characters. kind: the Snippets' kind (0 the domain, 1 general text)."""
    original, remapped = tokenizers
    per_token, context, max_tokens = sizes
    new_ids, wanted = set(new_ids), dict.fromkeys(new_ids, per_token)
    out, read = [], 0
    for text in tqdm(texts, desc="token distillation snippets", unit="doc", leave=False):
        if not wanted or (max_chars and read >= max_chars):
            break
        read += len(text)
        enc = remapped.encode(text, add_special_tokens=False)
        ids, offsets = enc.ids, enc.offsets  # each access of an Encoding's field builds a new list
        for q, i in enumerate(ids):
            if wanted.get(i, 0) <= 0:
                continue
            a, b = max(0, q - context), min(len(ids), q + context + 1)
            window = text[offsets[a][0] : offsets[b - 1][1]]
            at = offsets[q][0] - offsets[a][0]
            snippet = snippet_of(window, original, remapped, new_ids, at) if window else None
            # the hidden-state term needs an aligned position from the first new token on
            kept = snippet and any(q >= snippet.first for q, _ in snippet.aligned)
            if kept and len(snippet.teacher) <= max_tokens:
                snippet.kind = kind
                out.append(snippet)
                wanted[i] -= 1
                if not wanted[i]:
                    del wanted[i]
    return out


def contiguous_snippets(texts, tokenizers, max_chars, kind=0, chunk_chars=2000):
    """Every position of the first max_chars characters of texts, as Snippets of chunk_chars each (not
    trained on, counted on: `continuations` on windows cut around the new tokens would overstate how often
    text goes on as them)."""
    original, remapped = tokenizers
    out, read = [], 0
    for text in tqdm(texts, desc="continuation counts", unit="doc", leave=False):
        if read >= max_chars:
            break
        text = text[: max_chars - read]
        read += len(text)
        for start in range(0, len(text), chunk_chars):
            chunk = text[start : start + chunk_chars]
            s = remapped.encode(chunk, add_special_tokens=False)
            t = original.encode(chunk, add_special_tokens=False)
            aligned, _ = aligned_positions(s.offsets, t.offsets)
            out.append(Snippet(list(s.ids), list(t.ids), aligned, len(s.ids), [], -1, kind))
    return out


def padded(seqs):
    """(ids [batch, longest] padded with 0, attention mask) of a list of id lists."""
    n = max(map(len, seqs))
    ids = torch.zeros(len(seqs), n, dtype=torch.long)
    mask = torch.zeros(len(seqs), n, dtype=torch.long)
    for k, seq in enumerate(seqs):
        ids[k, : len(seq)] = torch.tensor(seq)
        mask[k, : len(seq)] = 1
    return ids, mask


def student_embeds(wte, rows, slot, ids):
    """Input embeddings of ids: wte's rows, and rows[slot[id]] for the new ids (the trainable ones)."""
    emb = wte[ids]
    where = slot[ids]
    is_new = where >= 0
    return torch.where(is_new[..., None], rows[where.clamp(min=0)], emb)


@torch.no_grad()
def teacher(model, batch, distributions=True):
    """The teacher on a batch: (last hidden states, and with distributions its next-token
    log-probabilities [batch, len, vocab] by the model's own output rows, and prefix sums of the
    log-probability of each actual next token: the pieces a..b-1 of a new token together have
    log-probability sums[b - 1] - sums[a - 1])."""
    ids, mask = padded([s.teacher for s in batch])
    hidden = model.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
    if not distributions:
        return hidden, None, None
    logp = torch.log_softmax(model.lm_head(hidden).float(), -1)
    actual = logp[:, :-1].gather(2, ids[:, 1:, None]).squeeze(2)
    return hidden, logp, torch.nn.functional.pad(actual.cumsum(1), (1, 0))


def occurrences(batch, slot):
    """The new tokens of new_at as tensors (snippet, q, a, b, slot of its id), or None."""
    rows = [
        (k, q, a, b, int(slot[s.student[q]])) for k, s in enumerate(batch) for q, a, b in s.new_at
    ]
    return [torch.tensor(x) for x in zip(*rows)] if rows else None


def continuations(snippets, new_ids, prefixes):
    """log p(the next token is the new id | GPT-2's next tokens are its prefix), for each new id and its
    prefix (a tuple of its first GPT-2 pieces): of the aligned positions where GPT-2's next tokens are that
    prefix, the share where the remapped tokenizer's next token is the new id (-inf when never). Counted,
    not taken from the model, so the new ids that share a prefix (a newline and each indentation after it)
    share at most its probability. The token each snippet was cut around is left out: it is there by
    construction. Counted apart for each kind of snippet (the domain, general text): [kinds, new ids].

    >>> continuations(snippets, [NEW], [(first,)])  # first seen 4 times, 2 of them as NEW: [[log 0.5]]
    """
    slot = {i: k for k, i in enumerate(new_ids)}
    kinds = 1 + max((s.kind for s in snippets), default=0)
    as_prefix = [dict.fromkeys(prefixes, 0) for _ in range(kinds)]
    as_new = [[0] * len(new_ids) for _ in range(kinds)]
    lengths = sorted({len(prefix) for prefix in prefixes})
    for s in snippets:
        for q, j in s.aligned:
            if q + 1 >= len(s.student) or j + 1 >= len(s.teacher) or q + 1 == s.focus:
                continue
            for n in lengths:
                prefix = tuple(s.teacher[j + 1 : j + 1 + n])
                if prefix in as_prefix[s.kind]:
                    as_prefix[s.kind][prefix] += 1
                    k = slot.get(s.student[q + 1])
                    if k is not None and prefixes[k] == prefix:
                        as_new[s.kind][k] += 1
    share = [
        [n / seen[p] if seen[p] else 0.0 for n, p in zip(counts, prefixes)]
        for counts, seen in zip(as_new, as_prefix)
    ]
    return torch.tensor(share, dtype=torch.float64).log().float()


def slot_of(vocab_size, new_ids):
    """slot[id] = the id's index in new_ids, -1 for the ids that keep their row."""
    slot = torch.full((vocab_size,), -1, dtype=torch.long)
    slot[torch.as_tensor(list(new_ids))] = torch.arange(len(new_ids))
    return slot


@torch.no_grad()
def mapped_teacher(logp, vocab, exact, lookahead=None, kind=None):
    """The teacher's next-token distribution [positions, vocab] as the student's vocabulary sees it:
    a new id gets p(first piece) x p(rest | first piece), its first piece keeps what remains of its own
    probability, the given-away strings get none; renormalised.
    p(rest | first piece) is the teacher's own as far as it has seen the text: the snippet's pieces where
    the new id is the actual next token (exact = (rows, slots, log-probabilities)); where the actual next
    token is the first piece, the teacher's probability of the second piece one position on times the
    counted share beyond it (lookahead = (rows, their actual next token, the log-probability of each new
    id's second piece one position on [rows, new ids]));
    elsewhere the counted share of the first piece (vocab.log_rest). The shares are those of each row's
    kind of text (kind [positions]; default: all the domain's).
    """
    p = logp.exp()
    kind = torch.zeros(len(p), dtype=torch.long) if kind is None else kind
    p_new = p[:, vocab.first_piece] * vocab.log_rest[kind].exp()
    if lookahead is not None and vocab.log_rest2 is not None:
        rows, next_token, logp_second = lookahead
        seen = (vocab.first_piece == next_token[:, None]) & (vocab.second_piece >= 0)
        known = p[rows][:, vocab.first_piece] * (logp_second + vocab.log_rest2[kind[rows]]).exp()
        p_new[rows] = torch.where(seen, known, p_new[rows])
    rows, slots, logprob = exact
    p_new[rows, slots] = logprob.exp()
    p[:, vocab.given_away] = 0
    p.index_add_(1, vocab.first_piece, -p_new).clamp_(min=0)
    p[:, vocab.new_ids] = p_new
    return p / p.sum(-1, keepdim=True)


def batch_loss(model, wte, rows, slot, batch, settings, vocab):
    """The objective on one batch: hidden_weight x the hidden-state term + output_weight x the KL term."""
    t_hidden, t_logp, sums = teacher(model, batch, distributions=bool(settings.output_weight))
    student_ids, student_mask = padded([s.student for s in batch])
    s_hidden = model.transformer(
        inputs_embeds=student_embeds(wte, rows, slot, student_ids), attention_mask=student_mask
    ).last_hidden_state
    loss = torch.zeros(())
    if settings.hidden_weight:
        pairs = [(k, q, j) for k, s in enumerate(batch) for q, j in s.aligned if q >= s.first]
        k, q, j = (torch.tensor(x) for x in zip(*pairs))
        loss = (
            loss + settings.hidden_weight * (s_hidden[k, q] - t_hidden[k, j]).pow(2).sum(-1).mean()
        )
    if settings.output_weight:
        kl = output_term(wte, rows, batch, (s_hidden, t_logp, sums), slot, vocab)
        loss = loss + settings.output_weight * kl
    return loss


def output_term(wte, rows, batch, teacher_out, slot, vocab):
    """Mean KL(mapped teacher || student) of the next-token distributions over the aligned positions.
    The student's output rows are wte with the new rows in (GPT-2's tie); only the new rows' logits and
    the hidden states after a new token carry a gradient to the rows."""
    s_hidden, t_logp, sums = teacher_out
    pairs = [(k, q, j) for k, s in enumerate(batch) for q, j in s.aligned]
    k, q, j = (torch.tensor(x) for x in zip(*pairs))
    row_of = torch.full((len(batch), max(len(s.student) for s in batch)), -1, dtype=torch.long)
    row_of[k, q] = torch.arange(len(k))
    exact = (torch.zeros(0, dtype=torch.long),) * 2 + (torch.zeros(0),)
    occ = occurrences(batch, slot)
    if occ is not None:
        # the position before each new token predicts it, as the teacher's pieces a..b-1 in a row
        ok, oq, oa, ob, n = occ
        at = row_of[ok, oq - 1]
        keep = at >= 0
        exact = (at[keep], n[keep], (sums[ok, ob - 1] - sums[ok, oa - 1])[keep])
    kind = torch.tensor([batch[s].kind for s, _, _ in pairs])
    lookahead = lookahead_of(batch, pairs, t_logp, vocab)
    target = mapped_teacher(t_logp[k, j], vocab, exact, lookahead, kind)
    h = s_hidden[k, q]
    logits = (h @ wte.T).index_copy(1, vocab.new_ids, h @ rows.T)
    cross = -(target * torch.log_softmax(logits, -1)).sum(-1)
    return (cross + (target * target.clamp(min=1e-30).log()).sum(-1)).mean()


def lookahead_of(batch, pairs, t_logp, vocab):
    """mapped_teacher's lookahead: the pairs (k, q, j) whose next teacher token is some new id's first
    piece, that token, and the teacher's log-probability of each new id's second piece one position on
    (given the first piece, so p(first) x that is the teacher's own probability of the first two)."""
    if vocab.second_piece is None:
        return None
    firsts = set(vocab.first_piece.tolist())
    found = [
        (r, k, j + 1, batch[k].teacher[j + 1])
        for r, (k, _, j) in enumerate(pairs)
        if j + 1 < len(batch[k].teacher) and batch[k].teacher[j + 1] in firsts
    ]
    if not found:
        return None
    rows, k, after, next_token = (torch.tensor(x) for x in zip(*found))
    second = vocab.second_piece.clamp(min=0)
    return rows, next_token, t_logp[k[:, None], after[:, None], second[None, :]]


def distill_rows(model, wte, new_ids, init, snippets, settings, vocab=None, progress=True):
    """The new rows (in the order of new_ids) after token distillation from init, and the
    objective's mean per epoch on up to MONITOR evenly spaced snippets ([before, after epoch 1, ...]).
    model: a GPT-2 whose own rows are the original ones; wte: the remapped matrix (new rows as init).
    vocab: the Vocab (vocab_of) the output-side term needs. Nothing of the model changes, and its modes
    are restored."""
    if settings.output_weight and vocab is None:
        raise ValueError("the output-side term needs the Vocab (vocab_of)")
    if not snippets:
        return init.clone(), []
    was_training = model.training
    model.eval()  # no dropout: the teacher and the student see the same network
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    wte = wte.detach().float()
    slot = slot_of(wte.shape[0], new_ids)
    rows = torch.nn.Parameter(init.detach().float().clone())
    optimizer = torch.optim.Adam([rows], lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    n_batches = math.ceil(len(snippets) / settings.batch_size)
    # the objective is followed on a fixed, evenly spaced subset: a full pass per epoch would cost as much
    monitor = snippets[:: max(1, len(snippets) // MONITOR)]
    history = [mean_loss(model, wte, rows, slot, monitor, settings, vocab)]
    try:
        for epoch in range(settings.epochs):
            order = torch.randperm(len(snippets), generator=generator).tolist()
            bar = tqdm(range(n_batches), desc=f"token distillation {epoch + 1}", unit="batch",
                       leave=False, disable=not progress)  # fmt: skip
            for b in bar:
                batch = [
                    snippets[i] for i in order[b * settings.batch_size :][: settings.batch_size]
                ]
                loss = batch_loss(model, wte, rows, slot, batch, settings, vocab)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            history.append(mean_loss(model, wte, rows, slot, monitor, settings, vocab))
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
        model.train(was_training)
    return rows.detach().to(init.dtype), history


@torch.no_grad()
def mean_loss(model, wte, rows, slot, snippets, settings, vocab):
    """The objective over all snippets, in batches (no gradient)."""
    total, n = 0.0, 0
    for b in range(0, len(snippets), settings.batch_size):
        batch = snippets[b : b + settings.batch_size]
        total += float(batch_loss(model, wte, rows, slot, batch, settings, vocab)) * len(batch)
        n += len(batch)
    return round(total / max(n, 1), 6)


def vocab_of(reassigned, original, counted_on, vocab_size):
    """The Vocab of the rules: reassigned {id: rule with its new string's "text"}; the continuations
    are counted on the Snippets counted_on (contiguous_snippets), each kind apart."""
    ids = sorted(reassigned)
    pieces = [original.encode(reassigned[i]["text"], add_special_tokens=False).ids for i in ids]
    given_away = torch.zeros(vocab_size, dtype=torch.bool)
    given_away[torch.tensor(ids)] = True
    rest = continuations(counted_on, ids, [tuple(p[:1]) for p in pieces])
    rest2 = continuations(counted_on, ids, [tuple(p[:2]) for p in pieces])
    first = torch.tensor([p[0] for p in pieces])
    second = torch.tensor([p[1] if len(p) > 1 else -1 for p in pieces])
    return Vocab(torch.tensor(ids), first, rest, given_away, second, rest2)


# (hidden-state weight, output-side weight) of each learned strategy; None = the config's td_ key
LEARNED = {"token-distillation": (1.0, 0.0), "token-distillation-output": (None, None)}


def learned_rows(model, wte, reassigned, tokenizers, corpora, cfg, strategies):
    """{strategy: the rules' rows} for the learned strategies among `strategies`, each distilled from the
    td_init rows on snippets of the train split (and of general text, td_general_docs); and what was done,
    for init_comparison.json. tokenizers: (GPT-2's, the remapped one); corpora: (the train split's jsonl,
    the general text's jsonl or None)."""
    import time

    from lib.init_rows import init_rows

    wanted = [s for s in dict.fromkeys(strategies) if s in LEARNED]
    if not wanted:
        return {}, {}
    if not reassigned:
        # no rules: no rows to learn, and final_rows still gets one (empty) per strategy
        return {s: wte[:0].clone() for s in wanted}, {}
    t0 = time.perf_counter()
    original = tokenizers[0]
    ids = sorted(reassigned)
    init = init_rows(cfg["td_init"], wte, [reassigned[i] for i in ids], original, cfg["seed"])
    student = wte.clone()
    student[torch.tensor(ids)] = init
    snippets, counted_on, report = training_text(model, ids, tokenizers, corpora, cfg)
    weights = {}
    for strategy in wanted:  # (hidden, output), the config's where the strategy leaves them open
        hidden, output = LEARNED[strategy]
        weights[strategy] = (
            cfg["td_hidden_weight"] if hidden is None else hidden,
            cfg["td_output_weight"] if output is None else output,
        )
    vocab = None
    if any(output for _, output in weights.values()):
        vocab = vocab_of(reassigned, original, counted_on, wte.shape[0])
        shares = vocab.log_rest.exp().mean(1).tolist()
        report["mean_continuation_share"] = {
            kind: round(share, 4) for kind, share in zip(("domain", "general"), shares)
        }
    out, report["runs"] = {}, {}
    for strategy in wanted:
        hidden, output = weights[strategy]
        settings = Settings(cfg["td_lr"], cfg["td_epochs"], cfg["td_batch_size"], cfg["seed"],
                            output, hidden)  # fmt: skip
        out[strategy], history = distill_rows(model, student, ids, init, snippets, settings, vocab)
        report["runs"][strategy] = {
            "hidden_weight": hidden,
            "output_weight": output,
            "objective_by_epoch": history,
        }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return out, report


def training_text(model, ids, tokenizers, corpora, cfg):
    """(the snippets trained on, the contiguous ones the shares are counted on, what they hold): from the
    train split (kind 0) and, when given, general text (kind 1), so that the rows also learn where the new
    strings are rare."""
    from lib.files import iter_docs

    train, general = corpora
    sizes = (cfg["td_snippets_per_token"], cfg["td_context_tokens"], model.config.n_positions)
    snippets = collect_snippets(iter_docs(train), tokenizers, ids, sizes, cfg["td_max_train_chars"])
    counted_on = contiguous_snippets(iter_docs(train), tokenizers, cfg["td_count_chars"])
    new_ids = set(ids)
    covered = len({i for s in snippets for i in s.student if i in new_ids})
    report = {"snippets": len(snippets), "new_tokens_with_snippets": covered}
    if general is not None:
        limit, fix = cfg["td_general_max_chars"], "fix the file td_general_docs names"
        extra = collect_snippets(iter_docs(general, fix), tokenizers, ids, sizes, limit, kind=1)
        counted_on += contiguous_snippets(iter_docs(general, fix), tokenizers, limit, kind=1)
        snippets += extra
        report["general_snippets"] = len(extra)
    return snippets, counted_on, report
