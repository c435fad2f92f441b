"""Metrics: OOD metrics equal sklearn / Mann-Whitney, FPR95's threshold rule, calibration by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from moon.metrics import (Calibration, OODMetrics, adaptive_ece, bin_index, calibration,
                          expected_calibration_error, fit_temperature, fpr_at_tpr, ood_metrics,
                          released_ece, reliability)
from moon.statistics import bootstrap_ci, paired_comparison, seed_summary


# --------------------------------------------------------------------------------------------------
# OOD metrics
# --------------------------------------------------------------------------------------------------
def mann_whitney_auroc(ids: np.ndarray, oods: np.ndarray) -> float:
    """P(s_id > s_ood) + 0.5 P(s_id = s_ood), over all pairs."""
    diff = ids[:, None] - oods[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def fpr95_by_order_statistic(ids: np.ndarray, oods: np.ndarray) -> float:
    """tau = the ceil(0.95 N)-th largest ID score; FPR = share of OOD scores >= tau."""
    k = math.ceil(0.95 * ids.size)
    tau = np.sort(ids)[::-1][k - 1]
    return float(np.mean(oods >= tau))


def test_perfect_separation():
    m = ood_metrics(torch.tensor([2.0, 3.0, 4.0]), torch.tensor([0.0, 1.0]))
    assert m == OODMetrics(auroc=1.0, aupr_in=1.0, aupr_out=1.0, fpr95=0.0)


def test_reversed_scores():
    m = ood_metrics(np.array([0.0, 1.0]), np.array([2.0, 3.0, 4.0]))
    assert m.auroc == 0.0
    assert m.fpr95 == 1.0


def test_all_tied_scores():
    m = ood_metrics(np.full(10, 0.3), np.full(7, 0.3))
    assert m.auroc == 0.5
    assert m.fpr95 == 1.0          # every OOD score is at the threshold, hence accepted


@pytest.mark.parametrize("n_id,n_ood,seed", [(20, 13, 0), (37, 50, 1), (1000, 700, 2)])
def test_equal_to_sklearn_and_mann_whitney(n_id, n_ood, seed):
    rng = np.random.default_rng(seed)
    ids = np.round(rng.normal(1.0, 1.0, n_id), 1)           # rounding creates ties
    oods = np.round(rng.normal(0.0, 1.0, n_ood), 1)
    m = ood_metrics(ids, oods)
    y = np.r_[np.ones(n_id), np.zeros(n_ood)]
    s = np.r_[ids, oods]
    assert m.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m.auroc == pytest.approx(mann_whitney_auroc(ids, oods), abs=1e-12)
    assert m.aupr_in == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert m.aupr_out == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    assert m.fpr95 == fpr95_by_order_statistic(ids, oods)
    assert all(0.0 <= v <= 1.0 for v in (m.auroc, m.aupr_in, m.aupr_out, m.fpr95))


def test_fpr95_threshold_rule_hand_case():
    # ID scores 1..20: keeping 95% (19 of 20) puts the threshold at tau = 2.
    # OOD scores >= 2 are 2 (tied: accepted), 2.5 and 10 -> 3 of 5.
    ids = np.arange(1, 21, dtype=float)
    oods = np.array([0.5, 1.5, 2.0, 2.5, 10.0])
    assert fpr_at_tpr(ids, oods) == pytest.approx(0.6)
    assert ood_metrics(ids, oods).fpr95 == pytest.approx(0.6)
    # Moving the tied OOD score just below tau removes it from the false positives.
    assert fpr_at_tpr(ids, np.array([0.5, 1.5, 1.99, 2.5, 10.0])) == pytest.approx(0.4)


def test_fpr95_uses_id_threshold_only():
    # ID 1..40: ceil(0.95 * 40) = 38 kept, tau = 3. OOD values do not move tau.
    ids = np.arange(1, 41, dtype=float)
    assert fpr_at_tpr(ids, np.array([2.9, 3.0, 100.0, -5.0])) == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [np.array([0.1, np.nan]), np.array([np.inf, 0.2])])
def test_non_finite_scores_raise(bad):
    with pytest.raises(ValueError, match="non-finite"):
        ood_metrics(bad, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        ood_metrics(np.array([0.0, 1.0]), bad)


def test_empty_scores_raise():
    with pytest.raises(ValueError, match="empty"):
        ood_metrics(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="empty"):
        ood_metrics(np.array([1.0]), [])


# --------------------------------------------------------------------------------------------------
# ECE, MCE, adaptive ECE
# --------------------------------------------------------------------------------------------------
def test_confidence_one_lands_in_last_bin():
    conf = np.array([1.0, 0.95, 0.5, 0.5])
    correct = np.array([False, True, True, False])
    rel = reliability(conf, correct, n_bins=15)
    assert rel.count[14] == 2 and sum(rel.count) == 4
    assert rel.bin_upper[-1] == 1.0
    # last bin: mean conf 0.975, accuracy 0.5 -> gap 0.475; bin [7/15, 8/15): gap 0.
    ece, mce = expected_calibration_error(conf, correct, n_bins=15)
    assert ece == pytest.approx(2 / 4 * 0.475)
    assert mce == pytest.approx(0.475)
    # Dropping confidence 1.0 (as the released code does) would give a different ECE.
    dropped, _ = expected_calibration_error(conf[1:], correct[1:], n_bins=15)
    assert dropped == pytest.approx(1 / 3 * 0.05)
    assert abs(dropped - ece) > 0.1


def test_bins_are_left_closed():
    edges = np.linspace(0, 1, 16)
    assert list(bin_index(edges, 15)) == list(range(15)) + [14]
    assert bin_index(np.array([0.0, np.nextafter(edges[1], 0)]), 15).tolist() == [0, 0]


def test_ece_and_mce_constructed_bins():
    # Bin [0.2, 0.4) (5 bins): conf 0.3 x4, 1 correct -> gap 0.05; bin [0.8, 1]: conf 0.9 x6,
    # 6 correct -> gap 0.1. ECE = 0.4 * 0.05 + 0.6 * 0.1 = 0.08; MCE = 0.1.
    conf = np.r_[np.full(4, 0.3), np.full(6, 0.9)]
    correct = np.r_[[1, 0, 0, 0], np.ones(6)].astype(bool)
    ece, mce = expected_calibration_error(conf, correct, n_bins=5)
    assert ece == pytest.approx(0.08)
    assert mce == pytest.approx(0.1)
    rel = reliability(conf, correct, n_bins=5)
    assert math.isnan(rel.accuracy[0]) and rel.count[0] == 0
    assert rel.accuracy[1] == pytest.approx(0.25) and rel.confidence[4] == pytest.approx(0.9)


def test_adaptive_ece_hand_case():
    conf = np.array([0.9, 0.1, 0.4, 0.6, 0.3, 0.2])
    correct = np.array([1, 0, 0, 1, 1, 0], dtype=bool)
    # sorted groups of 2: (0.1, 0.2) acc 0 -> 0.15; (0.3, 0.4) acc 0.5 -> 0.15; (0.6, 0.9) acc 1 -> 0.25
    assert adaptive_ece(conf, correct, n_bins=3) == pytest.approx((0.15 + 0.15 + 0.25) / 3)
    # uneven split (array_split): groups (0.1, 0.2, 0.3) and (0.4, 0.6, 0.9) of 3, then 5 -> 3 + 2
    assert adaptive_ece(conf[1:], correct[1:], n_bins=2) == pytest.approx(
        (3 * abs(1 / 3 - 0.2) + 2 * abs(0.5 - 0.5)) / 5)


def test_calibration_rejects_bad_confidence():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.2], [True])


# --------------------------------------------------------------------------------------------------
# calibration(): accuracy, NLL, Brier, K+1 heads
# --------------------------------------------------------------------------------------------------
def test_nll_brier_accuracy_by_hand():
    logits = torch.log(torch.tensor([[1.0, 2.0, 1.0], [1.0, 1.0, 2.0]]))   # p = [.25 .5 .25], [.25 .25 .5]
    labels = torch.tensor([0, 2])
    cal = calibration(logits, labels)
    assert cal.n == 2
    assert cal.accuracy == pytest.approx(0.5)
    assert cal.nll == pytest.approx((math.log(4) + math.log(2)) / 2)
    assert cal.brier == pytest.approx((0.75**2 + 0.5**2 + 0.25**2 + 0.25**2 + 0.25**2 + 0.5**2) / 2)


def test_matches_torch_on_random_logits():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(500, 10, generator=gen)
    labels = torch.randint(0, 10, (500,), generator=gen)
    cal = calibration(logits, labels)
    p = torch.softmax(logits.double(), 1)
    onehot = torch.nn.functional.one_hot(labels, 10).double()
    assert cal.nll == pytest.approx(torch.nn.functional.cross_entropy(logits.double(), labels).item())
    assert cal.brier == pytest.approx(((p - onehot) ** 2).sum(1).mean().item())
    assert cal.accuracy == pytest.approx((p.argmax(1) == labels).double().mean().item())
    ece, mce = expected_calibration_error(p.max(1).values, p.argmax(1) == labels)
    assert (cal.ece, cal.mce) == pytest.approx((ece, mce))
    assert cal.adaptive_ece == pytest.approx(adaptive_ece(p.max(1).values, p.argmax(1) == labels))


def test_unknown_column_is_ignored_with_num_known():
    gen = torch.Generator().manual_seed(1)
    known = torch.randn(200, 4, generator=gen)
    labels = torch.randint(0, 4, (200,), generator=gen)
    with_unknown = torch.cat([known, torch.full((200, 1), 50.0)], 1)     # unknown always "wins"
    assert calibration(with_unknown, labels, num_known=4) == calibration(known, labels)
    assert calibration(with_unknown, labels).accuracy == 0.0            # all columns: argmax = 4
    with pytest.raises(ValueError, match="known classes"):
        calibration(with_unknown, torch.full((200,), 4), num_known=4)


def test_sharper_correct_logits_lower_the_nll():
    labels = torch.arange(5) % 3
    onehot = torch.nn.functional.one_hot(labels, 3).double()
    nlls = [calibration(c * onehot, labels).nll for c in (0.5, 2.0, 8.0)]
    assert nlls[0] > nlls[1] > nlls[2]
    assert isinstance(calibration(onehot, labels), Calibration)


def test_calibration_input_errors():
    with pytest.raises(ValueError, match="NaN"):
        calibration(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="shape"):
        calibration(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="num_known"):
        calibration(torch.zeros(3, 2), torch.zeros(3), num_known=3)


# --------------------------------------------------------------------------------------------------
# Bootstrap, seeds, paired comparisons
# --------------------------------------------------------------------------------------------------
def test_bootstrap_contains_estimate_and_is_deterministic():
    x = np.random.default_rng(0).normal(size=200)
    low, high = bootstrap_ci(np.mean, x, n_boot=500, seed=3)
    assert low < x.mean() < high
    assert bootstrap_ci(np.mean, x, n_boot=500, seed=3) == (low, high)
    assert bootstrap_ci(np.mean, x, n_boot=500, seed=4) != (low, high)
    narrow = bootstrap_ci(np.mean, x, n_boot=500, seed=3, level=0.5)
    assert low < narrow[0] <= narrow[1] < high


def test_bootstrap_paired_and_independent():
    rng = np.random.default_rng(1)
    conf, correct = rng.uniform(size=300), rng.uniform(size=300) < 0.7
    point = expected_calibration_error(conf, correct)[0]
    low, high = bootstrap_ci(lambda c, k: expected_calibration_error(c, k)[0], conf, correct,
                             n_boot=200)
    assert low <= point <= high
    ids, oods = rng.normal(1, 1, 100), rng.normal(0, 1, 60)
    auroc = ood_metrics(ids, oods).auroc
    low, high = bootstrap_ci(lambda i, o: ood_metrics(i, o).auroc, ids, oods, n_boot=200,
                             independent=True)
    assert low < auroc < high
    with pytest.raises(ValueError, match="equal length"):
        bootstrap_ci(lambda i, o: 0.0, ids, oods)


def test_seed_summary():
    s = seed_summary([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert seed_summary(np.array([0.7])).std == 0.0
    with pytest.raises(ValueError):
        seed_summary([])


def test_paired_comparison_hand_case():
    # d = [1, 2, 3, 4]: mean 2.5, s_d = sqrt(5/3), t_{0.975, 3} = 3.182446305...
    p = paired_comparison([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert p.n == 4 and p.mean_diff == pytest.approx(2.5)
    assert (p.low, p.high) == pytest.approx((2.5 - half, 2.5 + half))
    assert p.excludes_zero
    q = paired_comparison([1.0, 0.0], [0.0, 1.0])       # d = [1, -1]: centred on 0
    assert q.mean_diff == 0.0 and not q.excludes_zero
    one = paired_comparison([0.9], [0.8])
    assert (one.low, one.high, one.excludes_zero, one.n) == (one.mean_diff, one.mean_diff, False, 1)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_comparison([1.0, 2.0], [1.0])


def test_fit_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(4000, 5)) * 2.0
    labels = np.array([rng.choice(5, p=np.exp(r) / np.exp(r).sum()) for r in true])
    t = fit_temperature(true * 3.0, labels)   # logits 3x too sharp
    assert t == pytest.approx(3.0, rel=0.1)
    extra = np.concatenate([true * 3.0, np.full((4000, 1), 50.0)], axis=1)   # a K+1 head
    assert fit_temperature(extra, labels, num_known=5) == pytest.approx(t)


def test_released_ece_on_hand_made_numbers():
    """The released code's convention: (K+1)-way softmax, prediction over all outputs ("unknown"
    is wrong), 10 bins, confidence exactly 1.0 dropped. K = 2 known classes + unknown."""
    p = torch.tensor([[0.75, 0.15, 0.10],    # conf 0.75 (bin 7), predicts 0 = label: right
                      [0.15, 0.20, 0.65],    # conf 0.65 (bin 6), predicts "unknown": wrong
                      [0.02, 0.95, 0.03]])   # conf 0.95 (bin 9), predicts 1 = label: right
    logits = torch.cat([p.log(), torch.tensor([[50.0, 0.0, 0.0]])])   # conf 1.0 in float32: dropped
    labels = torch.tensor([0, 1, 1, 1])                               # (and it would be wrong)
    expected = (abs(1 - 0.75) + abs(0 - 0.65) + abs(1 - 0.95)) / 3
    assert released_ece(logits, labels) == pytest.approx(expected, abs=1e-6)
    # ours renormalises over the K known classes, keeps every sample and uses 15 bins: different
    ours = calibration(logits, labels, num_known=2).ece
    assert abs(ours - expected) > 0.05
    assert math.isnan(released_ece(torch.tensor([[50.0, 0.0, 0.0]]), torch.tensor([0])))


def test_released_ece_counts_the_unknown_class_only_through_the_prediction():
    """Equal logits but for the unknown column: moving mass to "unknown" until it wins turns a
    right prediction into a wrong one."""
    known = torch.tensor([[2.0, 0.0]])
    right = released_ece(torch.cat([known, torch.tensor([[-5.0]])], 1), torch.tensor([0]))
    wrong = released_ece(torch.cat([known, torch.tensor([[3.0]])], 1), torch.tensor([0]))
    conf_right = torch.softmax(torch.tensor([2.0, 0.0, -5.0]), 0).max().item()
    conf_wrong = torch.softmax(torch.tensor([2.0, 0.0, 3.0]), 0).max().item()
    assert right == pytest.approx(1 - conf_right, abs=1e-6)
    assert wrong == pytest.approx(conf_wrong, abs=1e-6)


def test_minimum_detectable_effect_matches_the_power_it_promises():
    """Simulated: a true difference of one MDE is detected in about 80% of paired experiments."""
    from scipy import stats as st

    from moon.statistics import min_detectable_effect
    n, sd = 5, 2.0
    mde = min_detectable_effect(sd, n)
    assert 2.0 * (st.t.ppf(0.975, 4) + st.t.ppf(0.8, 4)) / 5 ** 0.5 == pytest.approx(mde, rel=0.1)
    rng = np.random.default_rng(0)
    d = rng.normal(mde, sd, size=(20000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / n ** 0.5)
    assert np.mean(np.abs(t) > st.t.ppf(0.975, n - 1)) == pytest.approx(0.8, abs=0.015)
    assert np.isnan(min_detectable_effect(sd, 1)) and min_detectable_effect(0.0, 5) == 0.0


def test_holm_matches_its_definition_and_paired_p_values_match_scipy():
    from scipy import stats as st

    from moon.statistics import holm, paired_comparison
    p = np.array([0.01, 0.04, 0.03, 0.2])
    order = np.argsort(p)
    expected = np.maximum.accumulate(np.minimum(1, (len(p) - np.arange(len(p))) * p[order]))
    adjusted = np.empty_like(p)
    adjusted[order] = expected
    assert holm(p) == pytest.approx(adjusted)
    a, b = np.array([0.8, 0.82, 0.79, 0.85, 0.81]), np.array([0.78, 0.8, 0.8, 0.81, 0.77])
    assert paired_comparison(a, b).p_value == pytest.approx(st.ttest_rel(a, b).pvalue)
