"""lib/free_ids.py: the under-trained indicator and the orders of the ids to give away."""

import torch

from lib.free_ids import overlap, top_principal_direction, undertrained_scores


def rows_with_one_untrained(seed=0):
    """Random rows with a shared offset (as trained rows have), where id 7 is set to the mean of all
    rows (a row no gradient reached) and ids 0-4 are the unused reference, left near the mean too."""
    g = torch.Generator().manual_seed(seed)
    wte = torch.randn(500, 16, generator=g) + 3.0
    mean = wte.mean(0)
    wte[0:5] = mean + 0.05 * torch.randn(5, 16, generator=g)
    wte[7] = wte.mean(0)
    return wte


def test_the_indicator_flags_a_row_set_to_the_mean_of_all_rows():
    wte = rows_with_one_untrained()
    scores = undertrained_scores(wte, range(5))
    ranked = sorted(range(5, 500), key=lambda i: -scores[i])
    assert ranked[0] == 7 and scores[7] > 0.5 > max(scores[i] for i in ranked[1:])
    assert undertrained_scores(wte, range(5)) == scores  # deterministic


def test_the_shared_direction_is_removed_first():
    """A row that shares only the offset every row has (the first principal direction) is not flagged."""
    wte = rows_with_one_untrained()
    v = top_principal_direction(wte.double())
    assert (
        abs(float(v @ torch.ones(16, dtype=torch.float64)) / 4.0) > 0.99
    )  # the offset's direction
    assert torch.equal(top_principal_direction(wte.double()), v)


def test_overlap_counts_the_ids_given_away_among_the_top():
    scores = [0.0, 0.9, 0.1, 0.8]  # the top two: ids 1 and 3
    assert overlap([(0, 0, -i, i, "", "") for i in (3, 1, 2)], scores, 2) == 2
    assert overlap([(0, 0, -i, i, "", "") for i in (2, 1, 3)], scores, 2) == 1
