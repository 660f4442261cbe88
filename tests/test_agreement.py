"""lib/agreement.py: mismatch classes, and the validation's text (eval_seed, never a corpus file)."""

import hashlib
import json

import yaml

from conftest import ROOT


def test_validation_text_follows_eval_seed_not_seed(distilled, monkeypatch):
    """The validation's random text (emoji documents, decode samples, the unseen pieces certified) is drawn
    from eval_seed alone, so a learning re-run with another seed is measured on the same text."""
    from tokenizers import Tokenizer

    import lib.agreement
    import lib.certify_pieces
    from lib.agreement import Compared, validate
    from lib.certify_pieces import unseen_wrong_pieces
    from lib.gpt2_bpe import Gpt2Bpe
    from lib.paths import Artifacts

    drawn = []
    draw_ood = lambda sources, max_bytes, n_emoji, seed, in_corpus: (
        drawn.append(("ood", seed)) or {}
    )
    monkeypatch.setattr(lib.agreement, "train_agreement", lambda *args: {})
    monkeypatch.setattr(lib.agreement, "evaluate_texts", lambda *args, **kwargs: ({}, []))
    monkeypatch.setattr(lib.agreement, "ood_documents", draw_ood)
    monkeypatch.setattr(lib.certify_pieces, "ood_documents", draw_ood)
    monkeypatch.setattr(
        lib.agreement,
        "decode_identity",
        lambda original, tok, n, max_len, seed: drawn.append(("decode", seed)) or {},
    )
    base, quick = (
        yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in (ROOT / "configs" / "distill.yaml", distilled[1] / "quick" / "distill.yaml")
    )
    cfg = {**base, **quick, "seed": 5, "eval_seed": 3}
    validate(None, ([],), Compared(None, None, None, []), Artifacts(distilled[0]), cfg)
    assert drawn == [("ood", 3), ("decode", 3)]
    drawn.clear()
    cfg["certify_unseen_max_pieces"] = 1
    monkeypatch.setattr(lib.certify_pieces, "iter_docs", lambda path: iter(()))
    tok = Tokenizer.from_file(
        str(distilled[0] / "tokenizers" / "distilled_unigram" / "tokenizer.json")
    )
    unseen_wrong_pieces(Artifacts(distilled[0]), cfg, tok, Gpt2Bpe(tok, {"a": 0}, []), [0.0])
    assert drawn == [("ood", 3)]


def test_mismatch_classes():
    from lib.agreement import classify

    strings = {
        0: "#",
        1: "####",
        2: "(",
        3: "''",
        4: "'",
        5: "('",
        6: "Ġallow",
        7: "ance",
        8: "Ġallowance",
        9: "comm",
        10: "its",
        11: "com",
        12: "mits",
    }
    tie = classify("#####", [1, 0], [0, 1], strings)
    run = classify("('''", [2, 3, 4], [5, 3], strings)
    other = classify("Ġallowance", [8], [6, 7], strings)
    double = classify("commits", [9, 10], [11, 12], strings)  # 'mm' is no run of 3+
    assert tie.startswith("permutation tie") and run.startswith("run in context")
    assert other.startswith("score order") and double.startswith("score order")


def test_out_of_domain_text_never_includes_a_corpus_file(tmp_path):
    """A file whose bytes are a source file of the corpus (02's manifest) is left out of the out-of-domain
    text and counted, so no step reports text it learned from as unseen."""

    from lib.oodtext import corpus_file_hashes, ood_documents

    (tmp_path / "seen.h").write_text("int seen(void);\n")
    (tmp_path / "unseen.h").write_text("int unseen(void);\n")
    (tmp_path / "unseen_copy.h").write_text(
        "int unseen(void);\n"
    )  # a duplicate beside a corpus file
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "files": [
                    {"path": "x/seen.h", "sha256": hashlib.sha256(b"int seen(void);\n").hexdigest()}
                ]
            }
        )
    )
    ood = ood_documents(
        {"c": [str(tmp_path / "*.h")]}, 10_000, in_corpus=corpus_file_hashes(manifest)
    )["c"]
    assert [p.rsplit("/", 1)[1] for p, _ in ood["files"]] == ["unseen.h"] and ood["docs"] == [
        "int unseen(void);\n"
    ]
    assert ood["note"] == "1 file(s) in the corpus left out"
    assert len(ood_documents({"c": [str(tmp_path / "*.h")]}, 10_000)["c"]["docs"]) == 2
