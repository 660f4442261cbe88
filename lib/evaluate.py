"""Held-out bits per byte: the quality measure that is fair across tokenizers.

bits/byte = (sum of the model's NLL, in bits, over every token of every text) / (UTF-8 bytes of the texts).
Documents are packed as <|endoftext|> doc <|endoftext|> doc ... and cut into windows of block_size + 1
tokens that overlap by one, so every text token is predicted exactly once. The separators are context,
never targets: they carry no bytes, and a tokenizer must not gain from predicting them.
"""

import math

import torch

from lib.tokenizer import EOT_ID

LN2 = math.log(2)


def pack_documents(tokenizer, texts):
    """One id stream <eot> d1 <eot> d2 ..., and a mask of which positions are text (targets)."""
    ids, is_text = [], []
    for enc in tokenizer.encode_batch_fast(list(texts), add_special_tokens=False):
        ids.append(EOT_ID)
        is_text.append(False)
        ids.extend(enc.ids)
        is_text.extend([True] * len(enc.ids))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(is_text, dtype=torch.bool)


@torch.no_grad()
def nll_bits(model, ids, is_text, block_size, batch_size=8, device="cpu"):
    """Sum of -log2 p(token | context) over the text positions of one packed stream; and their count."""
    windows, masks = [], []
    for start in range(0, max(len(ids) - 1, 0), block_size):
        window = ids[start:start + block_size + 1]
        if len(window) < 2:
            break
        windows.append(window)
        masks.append(is_text[start + 1:start + block_size + 1])
    total_bits, n_targets = 0.0, 0
    model.eval()
    for i in range(0, len(windows), batch_size):
        chunk, chunk_masks = windows[i:i + batch_size], masks[i:i + batch_size]
        width = max(len(w) for w in chunk)
        x = torch.full((len(chunk), width - 1), EOT_ID, dtype=torch.long)
        y = torch.full((len(chunk), width - 1), -100, dtype=torch.long)
        for row, (w, m) in enumerate(zip(chunk, chunk_masks)):
            x[row, :len(w) - 1] = w[:-1]
            y[row, :len(w) - 1] = torch.where(m, w[1:], torch.tensor(-100))
        logits = model(input_ids=x.to(device)).logits.float()
        nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.to(device).flatten(), ignore_index=-100, reduction="sum")
        total_bits += nll.item() / LN2
        n_targets += int((y != -100).sum())
    return total_bits, n_targets


def bits_per_byte(model, tokenizer, texts, block_size, batch_size=8, device="cpu"):
    """Held-out bits per byte of `model` on `texts`, tokenised by `tokenizer` (a tokenizers.Tokenizer)."""
    texts = list(texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    ids, is_text = pack_documents(tokenizer, texts)
    bits, n_tokens = nll_bits(model, ids, is_text, block_size, batch_size, device)
    return {"bits_per_byte": bits / max(n_bytes, 1), "bits": bits, "bytes": n_bytes, "tokens": n_tokens,
            "tokens_per_byte": n_tokens / max(n_bytes, 1)}
