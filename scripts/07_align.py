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
Strategies (lib/init_rows.py; the learned ones lib/token_distillation.py; configs/align.yaml says how each
treats the tied row): token-distillation (rows learned so that the model's hidden states with the new
token match its own on the old pieces, on train snippets) and token-distillation-output (its next-token
distributions matched instead, new strings included), subword-mean (FVT),
adaptivocab (-input, -output), mean, mean-cov, random, zeros; best = the one of compare_strategies with the
lowest held-out bits per byte after a short fine-tune (rank_by: short_finetune) or before any training
(rank_by: untrained). Reads the train split too (the snippets, the short fine-tune), and on the mini
profile scores the strategies on general text as well (corpora/general/heldout.jsonl).
init_comparison.json also holds a reference: a random init of the model's shape with GPT-2's tokenizer.
Tie: GPT-2's lm_head.weight is the same Parameter as wte.weight. 07 writes wte alone; whoever loads
final_wte copies it into that Parameter in place (wte.weight.data.copy_(final)), so lm_head follows --
07 does exactly that for the comparison and checks that lm_head changed with it. wpe is unchanged.
Weights are never made up: if the model's weights are missing, 07 stops and says how to provide them.
"""

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import load_config, parse_step_args, save_config, step_config
from lib.files import atomic_path, first_docs, iter_docs, require, sha256_file, write_json
from lib.init_compare import choose, compare_strategies, rank_by_short_finetune
from lib.init_rows import final_rows
from lib.ivr import id_to_piece, load_rules, protected_ids, read_unigram
from lib.log import die, log, setup_logging
from lib.model import is_tied, load_gpt2, model_source
from lib.paths import Artifacts
from lib.token_distillation import learned_rows
from lib.tokenizer import VOCAB_SIZE, load_gpt2_tokenizer

STEP = "07_align"


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


def general_docs(art, cfg):
    """td_general_docs as a path (a relative one under the artifacts folder), or None when unset."""
    if not cfg["td_general_docs"]:
        return None
    path = art.root / cfg["td_general_docs"]  # an absolute path stays as it is
    if not path.is_file():
        die(
            f'td_general_docs: {path} is not a file; give a jsonl of general text ({{"text": ...}} per '
            f'line; on the mini profile `make pretrain PROFILE=mini` writes it) or set it to ""'
        )
    return path


@dataclass
class Embeddings:
    """The model's token and position rows, the aligned rows (reassigned ones zero) and the final ones."""

    wte: object
    wpe: object
    aligned: object
    final: object


def write_embeddings(out_dir, model, name, rows, reassigned, choice):
    """The four .pt files with their metadata (the .pt targets last); choice: (strategy, why)."""
    import torch

    wte, wpe, aligned, final = rows.wte, rows.wpe, rows.aligned, rows.final
    strategy, chosen_by = choice

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

    # 2. the learned rows (token distillation on train snippets), then every strategy's final rows,
    #    compared on held-out text before any training
    strategies = [cfg["init_strategy"], *cfg["compare_strategies"]]
    corpora = (require(art.train_docs, "corpus"), general_docs(art, cfg))
    learned, distilled = learned_rows(
        model, wte, reassigned, (original, remapped), corpora, cfg, strategies
    )
    aligned, finals = final_rows(wte, reassigned, original, cfg, learned)
    comparison = {"model": name, "smoke_tiny_random_model": smoke, "strategies": {}}
    if distilled:
        comparison["token_distillation"] = distilled
    if cfg["compare_strategies"]:
        texts, _ = first_docs(iter_docs(art.heldout_docs), cfg["compare_max_bytes"])
        tokenizers = (original, remapped)
        comparison.update(compare_strategies(model, wte, finals, tokenizers, texts, cfg))
        general = art.general_corpus / "heldout.jsonl"
        if (
            general.exists()
        ):  # the mini profile: text that is not the domain, and still uses the old tokens
            log.info(f"the same on general text ({general}):")
            texts_general, _ = first_docs(iter_docs(general), cfg["compare_max_bytes"])
            comparison["general_text"] = compare_strategies(
                model, wte, finals, tokenizers, texts_general, cfg, reference=False
            )
        if cfg["rank_by"] == "short_finetune":
            # the first train documents, enough for the run's blocks at a generous 8 bytes a token: the
            # short run reads a few blocks, and the train split can be GBs
            steps, size = cfg["short_finetune_steps"], cfg["short_finetune_batch_size"]
            need = steps * size * (cfg["block_size"] + 1) * 8
            train, _ = first_docs(iter_docs(art.train_docs), need)
            ranked = rank_by_short_finetune(model, finals, remapped, (train, texts), cfg)
            comparison["after_short_finetune"] = ranked
    strategy, chosen_by = choose(comparison, cfg)
    comparison["chosen"] = strategy

    # 3. write: metadata first, the .pt targets last
    write_json(out_dir / "init_comparison.json", comparison)
    rows = Embeddings(wte, wpe, aligned, finals[strategy])
    meta = write_embeddings(out_dir, model, name, rows, reassigned, (strategy, chosen_by))
    save_config(cfg, out_dir / f"{STEP}.config.yaml", STEP, args.profile)
    log.info(
        f"wrote {out_dir}: final_wte {meta['shape']} {meta['dtype']}, {len(reassigned):,} rows initialised by "
        f"{strategy} ({chosen_by}; {time.perf_counter() - t_start:,.1f} s)"
    )


if __name__ == "__main__":
    main()
