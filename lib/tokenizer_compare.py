"""Two tokenizers side by side: do they decode every id sequence alike, and how fast does each encode.

>>> decode_identity(gpt2_bpe, distilled, n=1000, max_len=32, seed=0)["mismatches"]       # 0
>>> throughput(gpt2_bpe, distilled, texts, repeats=5)["ratio"]                            # distilled / BPE MB/s
"""

import time

import numpy as np

from lib.tokenizer import EOT_ID, VOCAB_SIZE


def decode_identity(original, distilled, n, max_len, seed):
    rng = np.random.default_rng(seed)
    seqs = [
        rng.integers(0, VOCAB_SIZE, size=int(k)).tolist()
        for k in rng.integers(1, max_len + 1, size=n)
    ]
    seqs[: min(n, 1000)] = [
        s + [EOT_ID] + s[:1] for s in seqs[: min(n, 1000)]
    ]  # the special token inside too
    bad = 0
    for skip in (False, True):
        a = original.decode_batch(seqs, skip_special_tokens=skip)
        b = distilled.decode_batch(seqs, skip_special_tokens=skip)
        bad += sum(x != y for x, y in zip(a, b))
    return {"sequences": n, "max_len": max_len, "seed": seed, "mismatches": bad}


def throughput(original, distilled, texts, repeats):
    """Encode the same texts with both on one thread, alternating; the best of `repeats` runs of each, in
    CPU seconds of this process (on a shared machine, wall time also counts the waits for a core)."""
    import os

    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    best = {"gpt2_bpe": 0.0, "distilled": 0.0}
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # tokenizers reads it on every batch call
    try:
        for _ in range(repeats):
            for name, tok in (("gpt2_bpe", original), ("distilled", distilled)):
                t0 = time.process_time()
                tok.encode_batch(texts, add_special_tokens=False)
                best[name] = max(best[name], n_bytes / 1e6 / max(time.process_time() - t0, 1e-9))
    finally:
        if saved is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved
    return {
        "bytes": n_bytes,
        "repeats": repeats,
        "threads": 1,
        "clock": "process CPU time",
        "gpt2_bpe_mb_per_s": round(best["gpt2_bpe"], 3),
        "distilled_mb_per_s": round(best["distilled"], 3),
        "ratio": round(best["distilled"] / max(best["gpt2_bpe"], 1e-9), 3),
    }
