"""Model FLOPs per token and utilisation (MFU), shared by 08's summary and the bench's GPU section.

FLOPs per trained token = 6 N + 12 L d T: N parameters (the tied wte/lm_head counted once), forward and
backward (PaLM appendix B, nanoGPT's estimate_mfu), plus attention over a context of T with L layers of width d.

    >>> flops_per_token(124_439_808, 12, 768, 1024)
    859914240.0
"""

# Dense bf16 peak of common GPUs (FLOP/s), for model FLOPs utilisation.
PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,
    "T4": 65e12,
}


def flops_per_token(n_params, n_layer, n_embd, block_size):
    return float(6 * n_params + 12 * n_layer * n_embd * block_size)


def peak_flops(device_name):
    """The dense bf16 peak of a GPU by its name, or None when it is not in the table."""
    return next((v for k, v in PEAK_BF16.items() if k in (device_name or "")), None)
