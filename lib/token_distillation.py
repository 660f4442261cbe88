"""Token distillation (Dobler et al., ICLR 2026): learn each new token's row so that the model's hidden
states with the one new token match those it computes on the old multi-token split of the same text.

The teacher is the model itself on GPT-2's tokens (the original tokenizer and rows): every new string of
IVR is a sequence of GPT-2 tokens today, so no donor model is needed. The student is the same model on
the remapped tokenizer's ids, with only the new rows trainable; every other parameter stays as it is.

What is matched: the last hidden state (after the final layer norm) at every position where both
tokenizations of a snippet end on the same character, from the first new token on. That state is what
the output layer reads, so matching it makes the model's next-token predictions after the new token
those it made after the old pieces; earlier layers are left free to represent the new token their way.
Positions before the first new token see the same tokens in both, so they carry no signal.

The tie: GPT-2's lm_head is wte, so a new row is also the new token's output row. The hidden-state term
trains its input side only. `output_weight > 0` adds an output-side term: at the position before each new
token, the student's log-probability of the new id is pulled toward the teacher's log-probability of the
old pieces in a row (the product of their next-token probabilities).

    >>> snippets = collect_snippets(texts, (original, remapped), new_ids, sizes=(16, 32, 1024))
    >>> rows, log = distill_rows(model, wte, new_ids, init, snippets, settings)
"""

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

MONITOR = 512  # snippets the objective is reported on, each epoch


@dataclass
class Snippet:
    """One text window holding a new token, in both tokenizations: the student's (remapped) and the
    teacher's (original) ids, the aligned positions (same end character) from the first new token on,
    and for each new token whose start is a boundary of both (student position q, teacher positions of
    its old pieces a..b-1): (q, a, b), for the output-side term."""

    student: list
    teacher: list
    aligned: list  # [(student position, teacher position)]
    new_at: list  # [(q, a, b)]


@dataclass
class Settings:
    """lr, epochs, batch_size and seed of the optimisation; output_weight of the output-side term (0: the
    tied row learns from the hidden states alone)."""

    lr: float
    epochs: int
    batch_size: int
    seed: int
    output_weight: float = 0.0


def ends(offsets):
    """The end character of each token: [(start, end)] offsets to their ends."""
    return [end for _, end in offsets]


def snippet_of(text, original, remapped, new_ids, focus=None):
    """A Snippet of text, or None when the remapped tokenizer emits no new token in it. focus: the new
    id the snippet was taken for; the output-side term then looks at its occurrences only (the window
    holds other new tokens too, each of which has snippets of its own)."""
    s = remapped.encode(text, add_special_tokens=False)
    t = original.encode(text, add_special_tokens=False)
    s_ids, s_offsets, t_offsets = s.ids, s.offsets, t.offsets  # one list each, not one per access
    first = next((q for q, i in enumerate(s_ids) if i in new_ids), None)
    if first is None:
        return None
    teacher_at = {end: j for j, end in enumerate(ends(t_offsets))}
    aligned = [(q, teacher_at[end]) for q, end in enumerate(ends(s_offsets)) if end in teacher_at]
    aligned = [(q, j) for q, j in aligned if q >= first]
    starts = {start: j for j, (start, _) in enumerate(t_offsets)}
    new_at = []
    for q, i in enumerate(s_ids):
        a, end = starts.get(s_offsets[q][0]), s_offsets[q][1]
        if (
            i in new_ids
            and (focus is None or i == focus)
            and q > 0
            and a is not None
            and end in teacher_at
        ):
            new_at.append((q, a, teacher_at[end] + 1))
    return Snippet(list(s_ids), list(t.ids), aligned, new_at)


def collect_snippets(texts, tokenizers, new_ids, sizes, max_chars=0):
    """Up to per_token snippets for each new id: windows of about `context` tokens either side of the
    id's occurrences in texts (document order, so the same texts give the same snippets), re-encoded by
    both tokenizers (GPT-2's, the remapped one); a window whose old tokens exceed max_tokens (the model's
    positions) is left out. sizes: (per_token, context, max_tokens). max_chars > 0 stops reading texts
    after that many characters."""
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
            snippet = snippet_of(window, original, remapped, new_ids, focus=i) if window else None
            if snippet and snippet.aligned and len(snippet.teacher) <= max_tokens:
                out.append(snippet)
                wanted[i] -= 1
                if not wanted[i]:
                    del wanted[i]
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


def batch_loss(model, wte, rows, slot, batch, output_weight):
    """The objective on one batch of snippets: the mean squared distance of the student's last hidden
    states to the teacher's at the aligned positions, plus output_weight x the mean squared gap of the
    new tokens' log-probabilities (student) to those of their old pieces (teacher)."""
    teacher_ids, teacher_mask = padded([s.teacher for s in batch])
    student_ids, student_mask = padded([s.student for s in batch])
    with torch.no_grad():
        t_out = model.transformer(input_ids=teacher_ids, attention_mask=teacher_mask)
    t_hidden = t_out.last_hidden_state
    s_hidden = model.transformer(
        inputs_embeds=student_embeds(wte, rows, slot, student_ids), attention_mask=student_mask
    ).last_hidden_state
    pairs = [(k, q, j) for k, s in enumerate(batch) for q, j in s.aligned]
    k, q, j = (torch.tensor(x) for x in zip(*pairs))
    loss = (s_hidden[k, q] - t_hidden[k, j]).pow(2).sum(-1).mean()
    if output_weight:
        loss = loss + output_weight * output_term(
            wte, rows, slot, batch, (s_hidden, t_hidden), student_ids
        )
    return loss


def output_term(wte, rows, slot, batch, hidden, student_ids):
    """Mean of (log p_student(new id | prefix) - log p_teacher(old pieces | prefix))^2 over the new
    tokens whose start is a boundary of both tokenizations. The student's output rows are wte with the
    new rows in (GPT-2's tie); the teacher's are wte alone. All positions in one product each, and only
    the new rows' logits carry a gradient to the rows."""
    s_hidden, t_hidden = hidden
    student_at, teacher_at, old_of = (
        [],
        [],
        [],
    )  # (snippet, position), ..., occurrence of each old piece
    for k, s in enumerate(batch):
        for q, a, b in s.new_at:
            student_at.append((k, q))
            teacher_at += [(k, p, s.teacher[p + 1]) for p in range(a - 1, b - 1)]
            old_of += [len(student_at) - 1] * (b - a)
    if not student_at:
        return torch.zeros(())
    k, q = (torch.tensor(x) for x in zip(*student_at))
    h = s_hidden[k, q - 1]  # the position before the new token predicts it
    new_ids = (slot >= 0).nonzero().squeeze(1)
    logits = (h @ wte.T).index_copy(1, new_ids, h @ rows[slot[new_ids]].T)
    student = torch.log_softmax(logits, -1).gather(1, student_ids[k, q][:, None]).squeeze(1)
    with torch.no_grad():
        tk, tp, target = (torch.tensor(x) for x in zip(*teacher_at))
        per_piece = torch.log_softmax(t_hidden[tk, tp] @ wte.T, -1).gather(1, target[:, None])
        teacher = torch.zeros(len(student_at), dtype=per_piece.dtype)
        teacher.index_add_(0, torch.tensor(old_of), per_piece.squeeze(1))
    return (student - teacher).pow(2).mean()


def distill_rows(model, wte, new_ids, init, snippets, settings, progress=True):
    """The new rows (in the order of new_ids) after token distillation from init, and the objective's
    mean per epoch on up to MONITOR evenly spaced snippets ([before, after epoch 1, ...]). model: a GPT-2 whose own rows are the original ones;
    wte: the remapped matrix (new rows as init). Nothing of the model changes, and its modes are restored."""
    if not snippets:
        return init.clone(), []
    was_training = model.training
    model.eval()  # no dropout: the teacher and the student see the same network
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    wte = wte.detach().float()
    slot = torch.full((wte.shape[0],), -1, dtype=torch.long)
    slot[torch.tensor(list(new_ids))] = torch.arange(len(new_ids))
    rows = torch.nn.Parameter(init.detach().float().clone())
    optimizer = torch.optim.Adam([rows], lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    n_batches = math.ceil(len(snippets) / settings.batch_size)
    # the objective is followed on a fixed, evenly spaced subset: a full pass per epoch would cost as much
    monitor = snippets[:: max(1, len(snippets) // MONITOR)]
    history = [mean_loss(model, wte, rows, slot, monitor, settings)]
    try:
        for epoch in range(settings.epochs):
            order = torch.randperm(len(snippets), generator=generator).tolist()
            bar = tqdm(range(n_batches), desc=f"token distillation {epoch + 1}", unit="batch",
                       leave=False, disable=not progress)  # fmt: skip
            for b in bar:
                batch = [
                    snippets[i]
                    for i in order[b * settings.batch_size : (b + 1) * settings.batch_size]
                ]
                loss = batch_loss(model, wte, rows, slot, batch, settings.output_weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            history.append(mean_loss(model, wte, rows, slot, monitor, settings))
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
        model.train(was_training)
    return rows.detach().to(init.dtype), history


@torch.no_grad()
def mean_loss(model, wte, rows, slot, snippets, settings):
    """The objective over all snippets, in batches (no gradient)."""
    total, n = 0.0, 0
    for b in range(0, len(snippets), settings.batch_size):
        batch = snippets[b : b + settings.batch_size]
        total += float(batch_loss(model, wte, rows, slot, batch, settings.output_weight)) * len(
            batch
        )
        n += len(batch)
    return round(total / max(n, 1), 6)


# output-side weight of each learned strategy: None = the config's td_output_weight
LEARNED = {"token-distillation": 0.0, "token-distillation-output": None}


def learned_rows(model, wte, reassigned, tokenizers, texts, cfg, strategies):
    """{strategy: the rules' rows} for the learned strategies among `strategies`, each distilled from the
    td_init rows on snippets of texts (the train split); and what was done, for init_comparison.json.
    tokenizers: (GPT-2's, the remapped one)."""
    import time

    from lib.init_rows import init_rows

    wanted = [s for s in dict.fromkeys(strategies) if s in LEARNED]
    if not wanted:
        return {}, {}
    if (
        not reassigned
    ):  # no rules: no rows to learn, and final_rows still gets one (empty) per strategy
        return {s: wte[:0].clone() for s in wanted}, {}
    t0 = time.perf_counter()
    original, remapped = tokenizers
    ids = sorted(reassigned)
    init = init_rows(cfg["td_init"], wte, [reassigned[i] for i in ids], original, cfg["seed"])
    student = wte.clone()
    student[torch.tensor(ids)] = init
    sizes = (cfg["td_snippets_per_token"], cfg["td_context_tokens"], model.config.n_positions)
    snippets = collect_snippets(texts, tokenizers, ids, sizes, cfg["td_max_train_chars"])
    covered = len({i for s in snippets for i in s.student if i in reassigned})
    out, report = {}, {"snippets": len(snippets), "new_tokens_with_snippets": covered, "runs": {}}
    for strategy in wanted:
        weight = cfg["td_output_weight"] if LEARNED[strategy] is None else LEARNED[strategy]
        settings = Settings(
            cfg["td_lr"], cfg["td_epochs"], cfg["td_batch_size"], cfg["seed"], weight
        )
        out[strategy], history = distill_rows(model, student, ids, init, snippets, settings)
        report["runs"][strategy] = {"output_weight": weight, "objective_by_epoch": history}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return out, report
