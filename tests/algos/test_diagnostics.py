"""Proposition 1's diagnostic quantities against autograd and hand-worked numbers."""
import math

import pytest
import torch

from src.algos.diagnostics import pearson_corr, step_score_norms, token_score_stats
from src.algos.empg import score_norm_sq_expectation


def test_sampled_score_norm_matches_autograd_and_expectation():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64) * 2
    targets = torch.randint(0, 11, (3, 5))
    stats = token_score_stats(logits, targets, temperature=1.0, chunk_rows=2)
    for n in range(3):
        for r in range(5):
            z = logits[n, r].clone().requires_grad_(True)
            torch.log_softmax(z, -1)[targets[n, r]].backward()
            assert stats["sampled_sq"][n, r].item() == pytest.approx((z.grad ** 2).sum().item(), rel=1e-9)
    torch.testing.assert_close(stats["expected_sq"], score_norm_sq_expectation(logits))


def test_temperature_scales_logits():
    logits = torch.tensor([[[2.0, 0.0]]])
    stats = token_score_stats(logits, torch.tensor([[0]]), temperature=2.0)
    # softmax([1, 0]): p = (e/(e+1), 1/(e+1)); sum p^2 and 1 - 2 p_0 + sum p^2
    p0, p1 = math.e / (math.e + 1), 1 / (math.e + 1)
    assert stats["expected_sq"].item() == pytest.approx(1 - p0 ** 2 - p1 ** 2, rel=1e-6)
    assert stats["sampled_sq"].item() == pytest.approx(1 - 2 * p0 + p0 ** 2 + p1 ** 2, rel=1e-6)


def test_step_means_skip_padding_tokens():
    stats = {"sampled_sq": torch.tensor([[0.25, 0.64, 9.0], [0.0, 0.0, 0.0]]),
             "expected_sq": torch.tensor([[0.5, 0.7, 9.0], [0.1, 0.2, 0.3]])}
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = step_score_norms(stats, mask)
    # row 0: mean(0.25, 0.64) = 0.445, mean(0.5, 0.7) = 0.6, mean(sqrt) = mean(0.5, 0.8) = 0.65; row 1 empty
    torch.testing.assert_close(out["sampled_sq"], torch.tensor([0.445, 0.0]))
    torch.testing.assert_close(out["expected_sq"], torch.tensor([0.6, 0.0]))
    torch.testing.assert_close(out["sampled_norm"], torch.tensor([0.65, 0.0]))


def test_pearson_hand_worked_and_undefined_cases():
    # x = (1, 2, 3), y = (2, 4, 7): centred (-1, 0, 1), (-7/3, -1/3, 8/3);
    # sum of products 7/3 + 0 + 8/3 = 5, sum x_c^2 = 2, sum y_c^2 = (49 + 1 + 64) / 9 = 114/9
    x, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 7.0])
    assert pearson_corr(x, y).item() == pytest.approx(5 / math.sqrt(2 * 114 / 9), rel=1e-6)
    assert pearson_corr(x, -x).item() == pytest.approx(-1.0)
    assert math.isnan(pearson_corr(x, torch.ones(3)).item())
    assert math.isnan(pearson_corr(torch.ones(1), torch.ones(1)).item())
    with pytest.raises(ValueError, match="equal"):
        pearson_corr(x, torch.ones(2))


def test_empg_decouples_gradient_size_from_entropy_on_a_constructed_batch():
    """Proposition 1's story: with equal base advantages, a high-entropy step has the larger logit
    gradient (|A| * score norm); EMPG's g(H) shrinks it, so the correlation with entropy drops."""
    from src.algos.empg import empg_advantages

    entropy = torch.tensor([[0.2, 0.6, 1.0, 1.4, 1.8]])
    score_norm = 0.3 + 0.3 * entropy[0]  # rises with entropy, as the proposition says it tends to
    base = torch.ones(1, 5)
    mask = torch.ones(1, 5, dtype=torch.bool)
    modulated = empg_advantages(base, entropy, mask, zeta=0.0, normalize=False)
    before = pearson_corr(base[0].abs() * score_norm, entropy[0])
    after = pearson_corr(modulated[0].abs() * score_norm, entropy[0])
    assert before.item() == pytest.approx(1.0) and after.item() < before.item() - 0.5
