"""Copy pre-training of the tiny model (src/policy/pretrain.py): the rows ask for what follows a cue in
the text, and the build caches the pre-trained weights under their own fingerprint."""
import torch

from src.policy.model import build_tiny_policy
from src.policy.pretrain import CUE_TOKENS, SPAN_TOKENS, copy_rows

SMALL = dict(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=1)


def test_rows_ask_for_the_continuation_of_the_cues_first_occurrence():
    texts = [[5, 6, 7, 8, 9, 10, 11, 12, 5, 6, 13, 14], [20, 21, 22, 23, 24, 25, 26], [1, 2]]
    for row in copy_rows(texts, separator=[99], num_rows=300, seed=3):
        prompt, response = row["prompt_ids"], row["response_ids"]
        sep = prompt.index(99)
        text, cue = prompt[:sep], prompt[sep + 1:]
        assert text in texts and CUE_TOKENS[0] <= len(cue) <= CUE_TOKENS[1] or len(cue) == len(text) - 1
        at = next(i for i in range(len(text)) if text[i:i + len(cue)] == cue)
        assert response == text[at + len(cue):at + len(cue) + len(response)]
        assert 1 <= len(response) <= SPAN_TOKENS[1] or at + len(cue) == len(text)
    # the repeated cue [5, 6] always points at its first continuation, 7 (never 13)
    rows = [r for r in copy_rows(texts, [99], 2000, seed=4) if r["prompt_ids"][-3:] == [99, 5, 6]]
    assert rows and all(r["response_ids"][0] == 7 for r in rows)


def test_build_with_copy_pretraining_is_cached_and_reproducible(tmp_path):
    settings = dict(steps=3, batch_size=2, lr=3e-3, seed=0, num_threads=1)
    plain = build_tiny_policy(str(tmp_path / "a"), **SMALL)
    a = build_tiny_policy(str(tmp_path / "a"), **SMALL, copy_pretrain=settings)
    b = build_tiny_policy(str(tmp_path / "b"), **SMALL, copy_pretrain=settings)
    assert a.fingerprint != plain.fingerprint and a.fingerprint == b.fingerprint
    assert len(list((tmp_path / "a").iterdir())) == 2  # the plain build and the pre-trained one
    weights = [dict(p.model.named_parameters()) for p in (plain, a, b)]
    assert all(torch.equal(weights[1][k], weights[2][k]) for k in weights[1])
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # steps 0 is the plain build
    assert build_tiny_policy(str(tmp_path / "a"), **SMALL, copy_pretrain={**settings, "steps": 0}).fingerprint \
        == plain.fingerprint
