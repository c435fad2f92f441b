"""Our scores and detectors against pytorch-ood's on the same synthetic logits and features.

A small random ``nn.Linear`` head with K+1 rows (ours must use the K known ones; pytorch-ood is
given only those), class-structured Gaussian features (ReLU'd, as penultimate features are) for
ID training, ID test and a shifted OOD set. Each pair must rank every sample the same: AUROC
equal to 1e-6 and Spearman rank correlation >= 0.9999 (the scales may differ, e.g. pytorch-ood's
Mahalanobis does not divide the covariance by N). pytorch-ood's scores are outlier scores (higher =
more OOD), so they are negated here before comparing. ECE is checked against torchmetrics.
"""

import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from torch import nn

pood = pytest.importorskip("pytorch_ood.detector")

from moon.metrics import calibration, ood_metrics  # noqa: E402
from moon.ood.feature_detectors import known_linear  # noqa: E402
from moon.ood.registry import make_detector  # noqa: E402
from moon.outputs import Outputs  # noqa: E402

K, D = 5, 16


class Net(nn.Module):
    def __init__(self, rows):
        super().__init__()
        self.head = nn.Linear(D, rows)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    net = Net(K + 1)
    means = 1.0 + torch.randn(K, D, generator=g)
    with torch.no_grad():   # known rows roughly aligned with the class means: a useful classifier
        w = torch.randn(K + 1, D, generator=g) * 0.3
        w[:K] += means - means.mean(dim=0)
        net.head.weight.copy_(w)
        net.head.bias.copy_(torch.randn(K + 1, generator=g) * 0.1)

    def draw(n, shift=0.0, scale=1.0):
        y = torch.arange(n) % K
        h = torch.relu(means[y] + shift + scale * torch.randn(n, D, generator=g))
        return Outputs(net.head(h).detach(), h, y)

    train, test = draw(3000), draw(600)
    ood = draw(600, shift=-0.4, scale=1.6)
    known = Net(K)
    known.head = known_linear(make_detector("energy", net, K))
    return net, known.head, train, test, ood


def check_same_ranking(ours_id, ours_ood, pood_id, pood_ood):
    """ours (higher = ID) against pytorch-ood outlier scores (higher = OOD) on the same samples."""
    ours = torch.cat([ours_id, ours_ood]).double().numpy()
    theirs = -torch.cat([pood_id, pood_ood]).double().numpy()
    y = [1] * len(ours_id) + [0] * len(ours_ood)
    auroc = roc_auc_score(y, ours)
    assert auroc == pytest.approx(roc_auc_score(y, theirs), abs=1e-6)
    assert 0.53 < auroc < 0.99     # informative and not saturated, so equal AUROCs mean something
    assert spearmanr(ours, theirs).statistic >= 0.9999


def ours(name, net, train, test, ood, **options):
    det = make_detector(name, net, K, **options)
    if det.needs_fit:
        det.fit(train)
    return det.score(test), det.score(ood)


def k_only(*outputs):
    """The same samples as a K-output head sees them (the unknown logit dropped)."""
    return [Outputs(o.logits[:, :K], o.features, o.labels) for o in outputs]


def logits_pair(fn, test, ood):
    return fn(test.logits[:, :K]), fn(ood.logits[:, :K])


# each in the precision ours computes it (float32 softmaxes saturate at 1.0, which ties samples)
LOGIT_CASES = {
    "msp_renorm": lambda z: pood.MaxSoftmax.score(z),
    "max_logit": lambda z: pood.MaxLogit.score(z),
    "energy": lambda z: pood.EnergyBased.score(z),
    "entropy": lambda z: pood.Entropy.score(z.double()),
    "gen": lambda z: pood.GEN.score(z.double(), gamma=0.1, M=K),
}


@pytest.mark.parametrize("name", list(LOGIT_CASES))
def test_logit_scores_rank_like_pytorch_ood(data, name):
    net, _, train, test, ood = data
    check_same_ranking(*ours(name, net, train, test, ood), *logits_pair(LOGIT_CASES[name], test, ood))


def test_msp_of_a_k_head_and_temperature_scaled_msp(data):
    net, known, train, test, ood = data
    plain = Net(K)
    plain.head = known
    check_same_ranking(*ours("msp", plain, *k_only(train, test, ood)),
                       *logits_pair(pood.MaxSoftmax.score, test, ood))
    check_same_ranking(*ours("msp_ts", net, train, test, ood, temperature=2.5),
                       *logits_pair(lambda z: pood.MaxSoftmax.score(z.double(), t=2.5), test, ood))


def fitted(detector, train):
    return detector.fit_features(train.features, train.labels)


def test_dice_react_knn_mahalanobis_rmds_vim_fdbd_rank_like_pytorch_ood(data):
    net, known, train, test, ood = data
    w, b = known.weight.detach(), known.bias.detach()
    reference = {
        "dice": (dict(p=90.0), fitted(pood.DICE(None, w=w, b=b, p=0.9), train)),
        "knn": (dict(k=10), fitted(pood.KNN(None, k=10), train)),
        "mahalanobis": ({}, fitted(pood.Mahalanobis(None), train)),
        "rmds": ({}, fitted(pood.RMD(None), train)),
        "vim": (dict(dim=8), fitted(pood.ViM(None, d=8, w=w, b=b), train)),
        "fdbd": ({}, pood.fDBD(None, known).fit_features(train.features)),
    }
    for name, (options, ref) in reference.items():
        check_same_ranking(*ours(name, net, train, test, ood, **options),
                           ref.predict_features(test.features), ref.predict_features(ood.features))


def test_react_ash_scale_rank_like_pytorch_ood(data):
    net, known, train, test, ood = data
    head = lambda x: known(x.flatten(1))  # noqa: E731  (pytorch-ood passes [N, D, 1, 1] maps)
    maps = lambda o: o.features[:, :, None, None]  # noqa: E731
    react = pood.ReAct(None, head, percentile=0.9).fit_feature_maps(maps(train), train.labels)
    reference = {"react": (dict(p=90.0), react),
                 "ash": (dict(p=90.0), pood.ASH(None, head, variant="ash-s", percentile=0.9)),
                 "scale": (dict(p=85.0), pood.SCALE(None, head, percentile=0.85))}
    for name, (options, ref) in reference.items():
        with torch.no_grad():
            check_same_ranking(*ours(name, net, train, test, ood, **options),
                               ref.predict_feature_maps(maps(test)),
                               ref.predict_feature_maps(maps(ood)))


def test_the_unknown_row_changes_nothing_for_detectors_on_known_rows(data):
    """The K+1 head and its K known rows alone give the same scores (the unknown row is unused)."""
    net, known, train, test, ood = data
    plain = Net(K)
    plain.head = known
    for name in ("energy", "gen", "dice", "vim", "fdbd", "ash", "scale", "rmds"):
        a = ours(name, net, train, test, ood)
        b = ours(name, plain, *k_only(train, test, ood))
        torch.testing.assert_close(a[0], b[0]), torch.testing.assert_close(a[1], b[1])


def test_ood_metrics_auroc_equals_sklearn_on_pytorch_ood_scores(data):
    net, _, train, test, ood = data
    ids, oods = ours("vim", net, train, test, ood, dim=8)
    y = [1] * len(ids) + [0] * len(oods)
    assert ood_metrics(ids, oods).auroc == pytest.approx(roc_auc_score(y, torch.cat([ids, oods])))


def test_ece_equals_torchmetrics():
    from torchmetrics.classification import MulticlassCalibrationError

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2000, K + 1, generator=g) * 3
    labels = torch.randint(0, K, (2000,), generator=g)
    probs = torch.softmax(logits[:, :K].double(), dim=1).float()
    ours_cal = calibration(logits, labels, num_known=K, n_bins=15)
    l1 = MulticlassCalibrationError(num_classes=K, n_bins=15, norm="l1")(probs, labels)
    top = MulticlassCalibrationError(num_classes=K, n_bins=15, norm="max")(probs, labels)
    assert ours_cal.ece == pytest.approx(float(l1), abs=1e-6)
    assert ours_cal.mce == pytest.approx(float(top), abs=1e-6)
    assert ours_cal.ece > 0.05            # miscalibrated on purpose: the check is not 0 == 0
