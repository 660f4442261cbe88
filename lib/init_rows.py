"""The new rows' init strategies for IVR (07): each reassigned id's row of wte from the old rows.

How each treats a row that is both input embedding and output (lm_head) row, since GPT-2 ties them:
  subword-mean        FVT: the plain mean of the original rows of the new string's GPT-2 BPE pieces
  adaptivocab         AdaptiVocab's exponentially weighted mean of those rows (input: toward the last
                      piece; output: toward the first; the tied row: the mean of the two)
  mean, mean-cov      the mean of all rows / transformers' mean_resizing (N(mean, 1e-9 cov))
  random, zeros       normal with the rows' std / zero

    >>> aligned, finals = final_rows(wte, reassigned, original, cfg)   # {strategy: the final matrix}
"""

from lib.log import die, log
from lib.schema import INIT_STRATEGIES as STRATEGIES
from lib.tokenizer import VOCAB_SIZE

PIECE_WEIGHTING = {
    "adaptivocab": "both",
    "adaptivocab-input": "last",
    "adaptivocab-output": "first",
}


def exp_weights(n, toward):
    """AdaptiVocab's exponential weights over a new string's n GPT-2 pieces (they sum to 1): toward the last
    piece for an input row (reading the string should leave the model where its last piece would), toward
    the first for an output row (predicting it should look like predicting its first piece), or `both`,
    the mean of the two, for a tied row that must serve as both.

        >>> exp_weights(3, toward="last")
        tensor([0.0900, 0.2447, 0.6652])
    """
    import torch

    last = torch.softmax(torch.arange(n, dtype=torch.float32), 0)
    if toward == "last":
        return last
    first = last.flip(0)
    return first if toward == "first" else (first + last) / 2


def mean_cov_rows(wte, n, seed):
    """n rows as transformers' mean_resizing draws them: N(mean, 1e-9 x covariance) of all the old rows, or
    the mean when that is not positive definite; deterministic for the seed (z from its own generator)."""
    import torch

    centred = (
        wte.double()
    )  # float64, centred in place: one copy of the matrix (GPT-2's is 300 MB so)
    mean = centred.mean(0)
    centred -= mean
    cov = centred.T @ centred / centred.shape[0]
    del centred
    # 1e-9 as transformers: the new rows stay at the mean, whose logit is about the average logit in every
    # context, so a new token takes no probability mass from the others; the covariance only breaks ties
    # between the new rows (a jitter of ~3e-5 of the rows' spread), it does not make them a sample of them.
    try:
        chol = torch.linalg.cholesky(1e-9 * cov)
    except RuntimeError:  # torch.linalg.LinAlgError: not positive definite
        log.info(
            "mean-cov: the rows' covariance is not positive definite; the mean, as transformers does"
        )
        return mean.expand(n, -1).clone().to(wte.dtype)
    z = torch.randn(
        n, wte.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    return (mean + z @ chol.T).to(wte.dtype)


def piece_rows(wte, rules, original, combine):
    """Each rule's row: combine() of the original rows of its string's GPT-2 BPE pieces, in float32."""
    import torch

    rows = [
        combine(wte[original.encode(r["text"], add_special_tokens=False).ids].float())
        for r in rules
    ]
    return (
        torch.stack(rows).to(wte.dtype) if rows else torch.zeros(0, wte.shape[1], dtype=wte.dtype)
    )


def init_rows(strategy, wte, rules, original, seed):
    """Rows for the rules' ids: a (len(rules), n_embd) tensor. The learned strategies
    (token-distillation, lib/token_distillation.py) need the model: final_rows takes their rows."""
    import torch

    n, dim = len(rules), wte.shape[1]
    if strategy == "mean-cov":
        return mean_cov_rows(wte, n, seed)
    if strategy in PIECE_WEIGHTING:
        return piece_rows(
            wte,
            rules,
            original,
            lambda rows: exp_weights(len(rows), PIECE_WEIGHTING[strategy]) @ rows,
        )
    if strategy == "zeros":
        return torch.zeros(n, dim, dtype=wte.dtype)
    if strategy == "mean":
        return wte.mean(0, keepdim=True).expand(n, dim).clone()
    if strategy == "random":
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(n, dim, generator=g, dtype=torch.float32) * wte.float().std()).to(
            wte.dtype
        )
    if strategy == "subword-mean":
        return piece_rows(wte, rules, original, lambda rows: rows.mean(0))
    die(
        f"configs/align.yaml: init_strategy must be one of {', '.join(STRATEGIES)}, got '{strategy}'"
    )


def final_rows(wte, reassigned, original, cfg, learned=None):
    """(aligned: reassigned rows zero, {strategy: final matrix}) for the configured and compared strategies.
    learned: {strategy: rows} of the learned ones (lib/token_distillation.learned_rows)."""
    import torch

    ids = torch.tensor(sorted(reassigned), dtype=torch.long)
    ordered = [reassigned[i] for i in sorted(reassigned)]
    aligned = wte.clone()
    aligned[ids] = 0
    finals = {}
    for strategy in dict.fromkeys(
        [s for s in (cfg["init_strategy"], *cfg["compare_strategies"]) if s != "best"]
    ):
        final = aligned.clone()
        rows = (learned or {}).get(strategy)
        final[ids] = (
            rows if rows is not None else init_rows(strategy, wte, ordered, original, cfg["seed"])
        )
        kept = torch.ones(VOCAB_SIZE, dtype=torch.bool)
        kept[ids] = False
        if not torch.equal(final[kept], wte[kept]):
            die(f"strategy {strategy} changed a row outside the rules (a bug in 07)")
        finals[strategy] = final
    return aligned, finals
