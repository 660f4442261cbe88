"""Held-out bits per byte: the quality measure that is fair across tokenizers.

bits/byte = (sum of the model's NLL, in bits, over every token of every text) / (UTF-8 bytes of the texts).
Documents are packed as <|endoftext|> doc <|endoftext|> doc ... and cut into windows of block_size + 1
tokens that overlap by one, so every text token is predicted exactly once. The separators are context,
never targets: they carry no bytes, and a tokenizer must not gain from predicting them.

Under several processes (accelerate, DDP or FSDP) pass rank, world_size and a `reduce` that sums a tensor
over the processes (e.g. accelerator.reduce): each process scores every world_size-th window, every
process runs the same number of forward passes (FSDP and DDP need that), and all get the global result.
"""

import math

import torch

from lib.tokenizer import EOT_ID

LN2 = math.log(2)


def pack_documents(tokenizer, texts):
    """One id stream <eot> d1 <eot> d2 ..., and a mask of which positions are text (targets)."""
    tokenizer = getattr(
        tokenizer, "backend_tokenizer", tokenizer
    )  # a transformers fast tokenizer works too
    ids, is_text = [], []
    for enc in tokenizer.encode_batch_fast(list(texts), add_special_tokens=False):
        ids.append(EOT_ID)
        is_text.append(False)
        ids.extend(enc.ids)
        is_text.extend([True] * len(enc.ids))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(is_text, dtype=torch.bool)


def windows_of(ids, is_text, block_size):
    """(window of up to block_size + 1 ids, target mask of its last len - 1 positions), stride block_size."""
    out = []
    for start in range(0, max(len(ids) - 1, 0), block_size):
        window = ids[start : start + block_size + 1]
        if len(window) < 2:
            break
        out.append((window, is_text[start + 1 : start + block_size + 1]))
    return out


@torch.no_grad()
def nll_bits(model, ids, is_text, block_size, batch_size=8, device="cpu", rank=0, world_size=1):
    """Sum of -log2 p(token | context) over the text positions of one packed stream; and their count.

    With world_size > 1 only this rank's share (every world_size-th window) is scored; the caller sums.
    The model's train/eval mode is restored on return.
    """
    windows = windows_of(ids, is_text, block_size)
    n_batches = math.ceil(
        math.ceil(len(windows) / world_size) / batch_size
    )  # the same on every rank
    mine = windows[rank::world_size]
    total_bits, n_targets = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for b in range(n_batches):
            chunk = mine[b * batch_size : (b + 1) * batch_size] or [
                (torch.tensor([EOT_ID, EOT_ID]), torch.tensor([False]))
            ]
            width = max(len(w) for w, _ in chunk)
            x = torch.full((len(chunk), width - 1), EOT_ID, dtype=torch.long)
            y = torch.full((len(chunk), width - 1), -100, dtype=torch.long)
            for row, (w, m) in enumerate(chunk):
                x[row, : len(w) - 1] = w[:-1]
                y[row, : len(w) - 1] = torch.where(m, w[1:], torch.tensor(-100))
            logits = model(input_ids=x.to(device)).logits.float()
            nll = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), y.to(device).flatten(), ignore_index=-100, reduction="sum"
            )
            total_bits += nll.item() / LN2
            n_targets += int((y != -100).sum())
    finally:
        model.train(was_training)
    return total_bits, n_targets


def bits_per_byte(
    model,
    tokenizer,
    texts,
    block_size,
    batch_size=8,
    device="cpu",
    rank=0,
    world_size=1,
    reduce=None,
):
    """Held-out bits per byte of `model` on `texts`, tokenised by `tokenizer` (a tokenizers.Tokenizer).

    reduce: None in one process; else a function summing a float64 tensor over the processes.
    """
    texts = list(texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    ids, is_text = pack_documents(tokenizer, texts)
    bits, n_tokens = nll_bits(model, ids, is_text, block_size, batch_size, device, rank, world_size)
    if reduce is not None:
        bits, n_tokens = reduce(
            torch.tensor([bits, float(n_tokens)], dtype=torch.float64, device=device)
        ).tolist()
        n_tokens = int(round(n_tokens))
    return {
        "bits_per_byte": bits / max(n_bytes, 1),
        "bits": bits,
        "bytes": n_bytes,
        "tokens": n_tokens,
        "tokens_per_byte": n_tokens / max(n_bytes, 1),
    }
