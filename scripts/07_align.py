"""
07 align: GPT-2's embeddings for the IVR tokenizer: kept rows untouched, reassigned rows initialised.

    .venv/bin/python scripts/07_align.py [--model-name DIR | hub id] [--init-strategy best]
        [--original-tokenizer-dir DIR] [--remapped-tokenizer-dir DIR] [--remap-rules-path FILE]
        [--embeddings-output-dir DIR]
    make artifacts/embeddings/final_wte.pt        (alias: make align)

Reads the model (default: model_name in tokenizers/original/model_source.json, written by 01), GPT-2's
tokenizer (01), the remapped tokenizer (06), the remap rules (05) and the held-out split. Writes to
artifacts/embeddings/:
  original_wte.pt, original_wpe.pt   the model's token and position embeddings as they are
  aligned_wte.pt                     rows re-placed per the rules: each kept id keeps its row (its string is
                                     unchanged, and so is its id); each reassigned id's row is zeroed
  final_wte.pt                       aligned_wte with the reassigned rows initialised by the strategy
  <name>.json beside each            shape, dtype, strategy, rows changed, sha256
  init_comparison.json               held-out bits per byte (lib/evaluate.py) with the model carrying
                                     final_wte, for every strategy; GPT-2 as is for reference
Strategies, and how each treats a row that is both input embedding and output (lm_head) row, since GPT-2 ties them:
  subword-mean        FVT: the plain mean of the original rows of the new string's GPT-2 BPE pieces; one
                      average serves both roles
  adaptivocab         AdaptiVocab's exponentially weighted mean of those rows; its input weighting leans to
                      the last piece and its output weighting to the first, so the tied row is the mean of
                      the two (ends weighted most); adaptivocab-input / -output are each side alone
  mean, mean-cov      the mean of all original rows (the seed's default) / transformers' mean_resizing
                      (N(mean, 1e-9 cov)): as output, the average logit; as input, an average token
  random              normal with the original rows' std: an arbitrary input and an arbitrary logit
  zeros               input adds nothing but position; output logit 0 in every context
  best (the default)  the one of compare_strategies with the lowest held-out bits per byte on this model,
                      because the ranking depends on the model (configs/align.yaml has the figures)
init_comparison.json also holds a reference: a random init of the model's shape with GPT-2's tokenizer.
Tie: GPT-2's lm_head.weight is the same Parameter as wte.weight. 07 writes wte alone; whoever loads
final_wte copies it into that Parameter in place (wte.weight.data.copy_(final)), so lm_head follows --
07 does exactly that for the comparison and checks that lm_head changed with it. wpe is unchanged.
Weights are never made up: if the model's weights are missing, 07 stops and says how to provide them.
"""

import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import load_config, parse_step_args, save_config, step_config
from lib.files import atomic_path, first_docs, iter_docs, sha256_file, write_json
from lib.ivr import id_to_piece, load_rules, protected_ids, read_unigram
from lib.log import die, log, setup_logging
from lib.model import is_tied, load_gpt2, model_source
from lib.paths import Artifacts
from lib.schema import INIT_STRATEGIES as STRATEGIES
from lib.tokenizer import VOCAB_SIZE, load_gpt2_tokenizer

STEP = "07_align"
PIECE_WEIGHTING = {
    "adaptivocab": "both",
    "adaptivocab-input": "last",
    "adaptivocab-output": "first",
}
RANDOM_REFERENCE = "random init, same shape (GPT-2 tokenizer)"


FLAGS = [  # the step's own flags (the config keys' flags come from lib/schema.py)
    (
        "--original-tokenizer-dir",
        {"help": "GPT-2's tokenizer (default: <artifacts>/tokenizers/original)"},
    ),
    (
        "--remapped-tokenizer-dir",
        {"help": "the IVR tokenizer (default: <artifacts>/tokenizers/remapped)"},
    ),
    (
        "--remap-rules-path",
        {"help": "the rules (default: <artifacts>/analysis/reports/remap_rules.yaml)"},
    ),
    (
        "--embeddings-output-dir",
        {"help": "where the .pt files go (default: <artifacts>/embeddings)"},
    ),
]


# -----------------------------------------------------------------------------
# strategies


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
    """Rows for the rules' ids: a (len(rules), n_embd) tensor."""
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


def describe(tensor, path, **extra):
    data = tensor.detach().cpu().contiguous()
    return {
        "file": str(path),
        "shape": list(data.shape),
        "dtype": str(data.dtype).replace("torch.", ""),
        "sha256": sha256_file(path),
        "tensor_sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest(),
        **extra,
    }


def save_tensor(tensor, path, **extra):
    import torch

    with atomic_path(path) as tmp:
        torch.save(tensor.detach().cpu().contiguous().clone(), tmp)
    meta = describe(tensor, path, **extra)
    write_json(path.with_suffix(".json"), meta)
    return meta


# -----------------------------------------------------------------------------
# phases


def checked_rules(art, args, select_cfg):
    """(GPT-2's tokenizer, the IVR tokenizer, the rules by id) after checking that they agree: every id keeps
    its string except the rules' ids."""
    original_dir = (
        Path(args.original_tokenizer_dir) if args.original_tokenizer_dir else art.original_tokenizer
    )
    remapped_dir = (
        Path(args.remapped_tokenizer_dir) if args.remapped_tokenizer_dir else art.remapped_tokenizer
    )
    rules_path = Path(args.remap_rules_path) if args.remap_rules_path else art.remap_rules
    original = load_gpt2_tokenizer(original_dir)
    old_pieces = id_to_piece(original)
    remapped, _, new_pieces, _ = read_unigram(remapped_dir)
    protected = protected_ids(old_pieces, select_cfg["protect"], "configs/select.yaml")
    reassigned = {r["id"]: r for r in load_rules(rules_path, old_pieces, remapped, protected)}
    for i in range(VOCAB_SIZE):
        want = reassigned[i]["new"] if i in reassigned else old_pieces[i]
        if new_pieces[i] != want:
            what = "the rules give it" if i in reassigned else "no rule names it; GPT-2 has"
            die(
                f"{remapped_dir / 'tokenizer.json'}: id {i} is {new_pieces[i]!r} but {what} {want!r}: the remapped "
                f"tokenizer does not match {rules_path}; re-run `make remap`"
            )
    log.info(f"{len(reassigned):,} rules match {original_dir} and {remapped_dir}")
    return original, remapped, reassigned


def the_model(art, cfg):
    """(model in eval mode, its name, whether it is the smoke profile's tiny random one): lib/model.py."""
    source = model_source(art, cfg["model_name"])
    if source.smoke:
        log.warning(
            "*** SMOKE PROFILE: the model is a TINY RANDOM GPT-2, not GPT-2: the comparison below is a machinery check only. ***"
        )
    model = load_gpt2(source)
    model.eval()
    return model, source.name, source.smoke


def final_rows(wte, reassigned, original, cfg):
    """(aligned: reassigned rows zero, {strategy: final matrix}) for the configured and compared strategies."""
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
        final[ids] = init_rows(strategy, wte, ordered, original, cfg["seed"])
        kept = torch.ones(VOCAB_SIZE, dtype=torch.bool)
        kept[ids] = False
        if not torch.equal(final[kept], wte[kept]):
            die(f"strategy {strategy} changed a row outside the rules (a bug in 07)")
        finals[strategy] = final
    return aligned, finals


def scored(label, model, tok, texts, block, cfg):
    """lib/evaluate.py's bits_per_byte of the model on the texts, timed and logged as one row."""
    from lib.evaluate import bits_per_byte

    t0 = time.perf_counter()
    res = bits_per_byte(model, tok, texts, block, batch_size=cfg["batch_size"])
    res["seconds"] = round(time.perf_counter() - t0, 1)
    log.info(
        f"  {label:42s} {res['bits_per_byte']:.4f} bits/byte ({res['tokens']:,} tokens, {res['seconds']} s)"
    )
    return res


def compare_strategies(model, wte, finals, original, remapped, art, cfg):
    """Held-out bits per byte of the model carrying each candidate matrix, before any training."""
    import torch

    texts, _ = first_docs(iter_docs(art.heldout_docs), cfg["compare_max_bytes"])
    block = min(cfg["block_size"], model.config.n_positions)
    result = {
        "heldout_documents": len(texts),
        "bytes": sum(len(t.encode("utf-8")) for t in texts),
        "block_size": block,
        "strategies": {},
    }
    emb, tied = model.get_input_embeddings().weight, is_tied(model)
    candidates = {
        "gpt2 as is (original tokenizer)": (wte, original),
        "old rows kept (no init)": (wte, remapped),
        **{s: (finals[s], remapped) for s in cfg["compare_strategies"]},
    }
    with torch.no_grad():
        for label, (matrix, tok) in candidates.items():
            emb.data.copy_(matrix)  # in place: lm_head is the same Parameter and follows
            if tied and not torch.equal(model.get_output_embeddings().weight, matrix):
                die("lm_head did not follow wte: the tie is broken in this model")
            result["strategies"][label] = scored(label, model, tok, texts, block, cfg)
        emb.data.copy_(wte)
    # beside "strategies", not in it: choose() ranks those, and this is a floor, not a candidate
    reference = random_model_reference(model.config, original, texts, block, cfg)
    result["references"] = {"random_init_same_shape": {"label": RANDOM_REFERENCE, **reference}}
    return result


def random_model_reference(config, original, texts, block, cfg):
    """Held-out bits per byte of a freshly initialised model of the same shape with GPT-2's tokenizer: the
    floor any model that has learned something must be clearly below (the global RNG is left as it was)."""
    import torch
    from transformers import GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):  # the init draws from the CPU generator only
        torch.manual_seed(cfg["seed"])
        random_model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        return scored(RANDOM_REFERENCE, random_model, original, texts, block, cfg)


def choose(comparison, cfg):
    """(the strategy of final_wte, why): the configured one, or with `best` the comparison's winner."""
    if cfg["compare_strategies"]:
        ranked = sorted(
            cfg["compare_strategies"], key=lambda s: comparison["strategies"][s]["bits_per_byte"]
        )
        comparison.update(best=ranked[0], configured=cfg["init_strategy"])
        if comparison["smoke_tiny_random_model"]:
            log.info(
                "(tiny random model: this ranking says nothing about GPT-2; it only shows the machinery runs)"
            )
        elif cfg["init_strategy"] not in ("best", ranked[0]):
            log.warning(
                f"warning: on this model {ranked[0]} beats the configured {cfg['init_strategy']} "
                f"({comparison['strategies'][ranked[0]]['bits_per_byte']:.4f} vs "
                f"{comparison['strategies'].get(cfg['init_strategy'], {}).get('bits_per_byte', float('nan')):.4f} bits/byte)"
            )
    if cfg["init_strategy"] == "best":
        return comparison["best"], "lowest held-out bits per byte of compare_strategies"
    return cfg["init_strategy"], "config"


def write_embeddings(
    out_dir, model, name, wte, wpe, aligned, final, reassigned, strategy, chosen_by
):
    """The four .pt files with their metadata (the .pt targets last)."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor(sorted(reassigned), dtype=torch.long)
    norms = wte.float().norm(dim=1)
    tie = (
        "lm_head.weight is wte.weight (one Parameter): load final_wte with wte.weight.data.copy_(final) "
        "and lm_head follows"
        if is_tied(model)
        else "lm_head is NOT tied in this model: copy final_wte into lm_head too"
    )
    common = {"model": name, "tie": tie}
    save_tensor(wte, out_dir / "original_wte.pt", **common, rows_changed=0)
    save_tensor(wpe, out_dir / "original_wpe.pt", **common, rows_changed=0, note="unchanged by IVR")
    save_tensor(
        aligned,
        out_dir / "aligned_wte.pt",
        **common,
        rows_changed=len(reassigned),
        reassigned_ids=sorted(reassigned),
        note="kept ids keep their row; reassigned rows are zero until final_wte",
        given_away_rows_mean_norm=float(norms[ids].mean()) if len(ids) else None,
        all_rows_mean_norm=float(norms.mean()),
    )
    return save_tensor(
        final,
        out_dir / "final_wte.pt",
        **common,
        strategy=strategy,
        chosen_by=chosen_by,
        rows_changed=len(reassigned),
        reassigned_ids=sorted(reassigned),
    )


def main():
    args = parse_step_args("align", __doc__, FLAGS)
    art = Artifacts(args.artifacts)
    cfg = step_config("align", args)
    select_cfg = load_config("select", args.profile, args.configs)
    setup_logging(STEP, art.log_file(STEP))
    t_start = time.perf_counter()
    out_dir = Path(args.embeddings_output_dir) if args.embeddings_output_dir else art.embeddings

    # 1. the tokenizers and rules (checked to agree), then the model
    original, remapped, reassigned = checked_rules(art, args, select_cfg)
    model, name, smoke = the_model(art, cfg)
    wte = model.get_input_embeddings().weight.detach().clone()
    wpe = model.transformer.wpe.weight.detach().clone()
    log.info(
        f"model {name}: wte {tuple(wte.shape)} {wte.dtype}, wpe {tuple(wpe.shape)}, lm_head tied to wte: {is_tied(model)}"
    )

    # 2. the aligned and final rows, compared on held-out text before any training
    aligned, finals = final_rows(wte, reassigned, original, cfg)
    comparison = {"model": name, "smoke_tiny_random_model": smoke, "strategies": {}}
    if cfg["compare_strategies"]:
        comparison.update(compare_strategies(model, wte, finals, original, remapped, art, cfg))
    strategy, chosen_by = choose(comparison, cfg)
    comparison["chosen"] = strategy

    # 3. write: metadata first, the .pt targets last
    write_json(out_dir / "init_comparison.json", comparison)
    meta = write_embeddings(
        out_dir, model, name, wte, wpe, aligned, finals[strategy], reassigned, strategy, chosen_by
    )
    save_config(cfg, out_dir / f"{STEP}.config.yaml", STEP, args.profile)
    log.info(
        f"wrote {out_dir}: final_wte {meta['shape']} {meta['dtype']}, {len(reassigned):,} rows initialised by "
        f"{strategy} ({chosen_by}; {time.perf_counter() - t_start:,.1f} s)"
    )


if __name__ == "__main__":
    main()
