"""lib/token_distillation.py on a toy model: the objective goes down, the result is deterministic, and
only the new rows are learned (every parameter of the model stays bit-identical)."""

from types import SimpleNamespace

import pytest
import torch

from lib.token_distillation import (
    Settings,
    Vocab,
    collect_snippets,
    contiguous_snippets,
    continuations,
    distill_rows,
    mapped_teacher,
    snippet_of,
    vocab_of,
)

NEW_ID = 40000


class Merged:
    """GPT-2's BPE, with each run of the ids `pair` emitted as NEW_ID: a remapped tokenizer in small."""

    def __init__(self, tokenizer, pair):
        self.tokenizer, self.pair = tokenizer, pair

    def encode(self, text, add_special_tokens=False):
        e = self.tokenizer.encode(text, add_special_tokens=False)
        ids, offsets, k = [], [], 0
        while k < len(e.ids):
            if tuple(e.ids[k : k + 2]) == self.pair:
                ids.append(NEW_ID)
                offsets.append((e.offsets[k][0], e.offsets[k + 1][1]))
                k += 2
            else:
                ids.append(e.ids[k])
                offsets.append(e.offsets[k])
                k += 1
        return SimpleNamespace(ids=ids, offsets=offsets)


@pytest.fixture(scope="module")
def toy(gpt2_bpe):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, n_layer=2, n_head=2, n_embd=32, n_positions=128)
    model = GPT2LMHeadModel(config).eval()
    pair = (gpt2_bpe.encode(" return").ids[0], gpt2_bpe.encode(" x").ids[0])
    remapped = Merged(gpt2_bpe, pair)
    texts = [f"def f{i}(x):\n    y = x * {i}\n    return x + y\n" for i in range(40)]
    snippets = collect_snippets(texts, (gpt2_bpe, remapped), [NEW_ID], sizes=(16, 16, 128))
    wte = model.get_input_embeddings().weight.detach().clone()
    init = wte[list(pair)].mean(0, keepdim=True)  # subword-mean
    wte[NEW_ID] = init[0]
    counted_on = contiguous_snippets(texts, (gpt2_bpe, remapped), max_chars=10**6)
    vocab = vocab_of({NEW_ID: {"text": " return x"}}, gpt2_bpe, counted_on, vocab_size=50257)
    return SimpleNamespace(
        model=model,
        wte=wte,
        init=init,
        snippets=snippets,
        remapped=remapped,
        texts=texts,
        vocab=vocab,
    )


def test_snippets_align_where_both_tokenizations_end_alike(gpt2_bpe, toy):
    """' return x' is one student token and two teacher tokens: the student position of the new token
    aligns with the teacher's ' x', the positions before it align one to one, and its old pieces are
    teacher positions q and q + 1."""
    s = snippet_of("    return x + y\n", gpt2_bpe, toy.remapped, {NEW_ID})
    q = s.student.index(NEW_ID)
    assert (
        len(s.teacher) == len(s.student) + 1
        and (q, q + 1) in s.aligned
        and (q + 1, q + 1) not in s.aligned
    )
    assert (
        s.first == q and [(p, p) for p in range(q)] == s.aligned[:q] and s.new_at == [(q, q, q + 2)]
    )
    assert snippet_of("no new token here", gpt2_bpe, toy.remapped, {NEW_ID}) is None
    assert len(toy.snippets) == 16
    # a window longer than the model's positions in old tokens is left out
    assert collect_snippets(toy.texts, (gpt2_bpe, toy.remapped), [NEW_ID], sizes=(16, 16, 8)) == []


@pytest.mark.parametrize("hidden, output", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_distillation_lowers_its_objective_deterministically(toy, hidden, output):
    settings = Settings(
        lr=1e-2, epochs=3, batch_size=8, seed=0, output_weight=output, hidden_weight=hidden
    )
    args = (toy.model, toy.wte, [NEW_ID], toy.init, toy.snippets, settings, toy.vocab)
    rows, history = distill_rows(*args)
    again, history_again = distill_rows(*args)
    assert history[-1] < 0.9 * history[0] and history == sorted(history, reverse=True)
    assert torch.equal(rows, again) and history == history_again
    assert not torch.equal(rows, toy.init) and rows.shape == toy.init.shape


def test_only_the_new_rows_are_learned(toy):
    """Every parameter of the model is bit-identical after, requires_grad and the mode are restored, and
    the matrix passed in is untouched."""
    state = {k: v.clone() for k, v in toy.model.state_dict().items()}
    grads = [p.requires_grad for p in toy.model.parameters()]
    wte = toy.wte.clone()
    settings = Settings(lr=1e-2, epochs=1, batch_size=4, seed=0, output_weight=1.0)
    distill_rows(toy.model, toy.wte, [NEW_ID], toy.init, toy.snippets, settings, toy.vocab)
    assert all(torch.equal(state[k], v) for k, v in toy.model.state_dict().items())
    assert [p.requires_grad for p in toy.model.parameters()] == grads and not toy.model.training
    assert torch.equal(toy.wte, wte)


def test_no_rules_give_empty_rows_for_every_learned_strategy(gpt2_bpe, toy):
    """A run with no rules (num_reassign 0) still gets a (0, n_embd) block per learned strategy, which
    final_rows takes as it is."""
    from lib.init_rows import final_rows
    from lib.token_distillation import learned_rows

    cfg = {"init_strategy": "token-distillation", "compare_strategies": ["zeros"], "seed": 0}
    learned, report = learned_rows(
        toy.model, toy.wte, {}, (gpt2_bpe, toy.remapped), [], cfg, ["token-distillation", "zeros"]
    )
    assert list(learned) == ["token-distillation"] and learned["token-distillation"].shape == (
        0,
        32,
    )
    assert report == {}
    _, finals = final_rows(toy.wte, {}, gpt2_bpe, cfg, learned)
    assert set(finals) == {"token-distillation", "zeros"}
    assert torch.equal(finals["token-distillation"], toy.wte)


def test_the_teacher_is_mapped_onto_the_new_vocabulary():
    """Id 3 is new with first piece 1 and p(rest | first) = 1/2; id 2 was given away. The new id gets
    p(1) / 2, piece 1 keeps the other half, id 2 nothing; where the new id is the actual next token its
    exact probability replaces the estimate; every row sums to 1."""
    logp = torch.tensor([[0.4, 0.4, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1]]).log()
    given_away = torch.tensor([False, False, True, True])
    vocab = Vocab(torch.tensor([3]), torch.tensor([1]), torch.tensor([[0.5]]).log(), given_away)
    exact = (torch.tensor([1]), torch.tensor([0]), torch.tensor([0.3]).log())
    p = mapped_teacher(logp, vocab, exact)
    torch.testing.assert_close(p[0], torch.tensor([0.4, 0.2, 0.0, 0.2]) / 0.8)
    torch.testing.assert_close(p[1], torch.tensor([0.1, 0.3, 0.0, 0.3]) / 0.7)


def test_where_the_next_token_is_the_first_piece_the_teacher_looks_one_position_on():
    """Row 0's actual next token is piece 1, and one position on the teacher gives the new id's second
    piece (0) 1/4: the new id gets p(1) x 1/4 x the counted share beyond the two pieces (0.8), not the
    first piece's counted share; row 1 keeps the counted estimate."""
    logp = torch.tensor([[0.4, 0.4, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1]]).log()
    given_away = torch.tensor([False, False, True, True])
    vocab = Vocab(torch.tensor([3]), torch.tensor([1]), torch.tensor([[0.5]]).log(), given_away,
                  torch.tensor([0]), torch.tensor([[0.8]]).log())  # fmt: skip
    none = (torch.zeros(0, dtype=torch.long),) * 2 + (torch.zeros(0),)
    lookahead = (torch.tensor([0]), torch.tensor([1]), torch.tensor([[0.25]]).log())
    p = mapped_teacher(logp, vocab, none, lookahead)
    torch.testing.assert_close(p[0], torch.tensor([0.4, 0.32, 0.0, 0.08]) / 0.8)
    torch.testing.assert_close(p[1], torch.tensor([0.1, 0.3, 0.0, 0.3]) / 0.7)
    # a next token that is not the new id's first piece leaves the row to the counted share
    other = (torch.tensor([0]), torch.tensor([0]), torch.tensor([[0.25]]).log())
    torch.testing.assert_close(mapped_teacher(logp, vocab, none, other)[0],
                               torch.tensor([0.4, 0.2, 0.0, 0.2]) / 0.8)  # fmt: skip


def test_the_output_side_term_needs_the_vocab(toy):
    settings = Settings(lr=1e-2, epochs=1, batch_size=4, seed=0, output_weight=1.0)
    with pytest.raises(ValueError, match="Vocab"):
        distill_rows(toy.model, toy.wte, [NEW_ID], toy.init, toy.snippets, settings)


def test_continuations_are_the_share_of_the_first_piece_that_becomes_the_new_token(gpt2_bpe, toy):
    """' return' goes on as ' x' (the new token) in two of four lines and as ' y' in the others: the
    share is counted over the positions where GPT-2's next token is ' return', leaving out the token
    the window was cut around."""
    text = "a = 1\n    return x\n    return y\n    return y\n    return x + 1\n"
    first = gpt2_bpe.encode(" return").ids[0]
    snippet = snippet_of(text, gpt2_bpe, toy.remapped, {NEW_ID})
    torch.testing.assert_close(
        continuations([snippet], [NEW_ID], [(first,)]), torch.tensor([[0.5]]).log()
    )
    # cut around its first ' return x', that one is left out: 1 of the other 3
    focused = snippet_of(text, gpt2_bpe, toy.remapped, {NEW_ID}, focus_char=text.index(" return x"))
    assert focused.focus == focused.student.index(NEW_ID)
    rest = continuations([focused], [NEW_ID], [(first,)])
    torch.testing.assert_close(rest, torch.tensor([[1 / 3]]).log())
    # given both of its pieces, every ' return x' became the new token
    both = tuple(gpt2_bpe.encode(" return x").ids)
    torch.testing.assert_close(continuations([snippet], [NEW_ID], [both]), torch.tensor([[0.0]]))


def test_shares_are_counted_on_every_position_of_the_text_and_apart_for_general_text(gpt2_bpe, toy):
    """The domain's ' return' goes on as ' x' (the new token) in one line of two, the general text's never:
    contiguous_snippets reads only max_chars of it, every position, and each kind gets its own share."""
    first = gpt2_bpe.encode(" return").ids[0]
    domain = "a = 1\n    return x\n    return y\n"
    general = "the function may return yes or return no\n"
    tokenizers = (gpt2_bpe, toy.remapped)
    counted_on = contiguous_snippets(
        [domain, domain, "    return x\n" * 50], tokenizers, 2 * len(domain)
    )
    counted_on += contiguous_snippets([general], tokenizers, 10**6, kind=1)
    assert [s.kind for s in counted_on] == [0, 0, 1]
    rest = continuations(counted_on, [NEW_ID], [(first,)]).exp()
    torch.testing.assert_close(rest, torch.tensor([[0.5], [0.0]]))
    # the mapped teacher takes each row's share from its own kind
    logp = torch.full((2, 50257), -30.0)
    logp[:, first] = 0.0
    vocab = vocab_of({NEW_ID: {"text": " return x"}}, gpt2_bpe, counted_on, vocab_size=50257)
    none = (torch.zeros(0, dtype=torch.long),) * 2 + (torch.zeros(0),)
    p = mapped_teacher(logp.log_softmax(-1), vocab, none, kind=torch.tensor([0, 1]))
    assert p[0, NEW_ID] == pytest.approx(0.5, abs=1e-3) and p[1, NEW_ID] == 0
