"""The regime check reads the history and ID metrics of result files."""

import pytest

from moon.report.regime import premise, regime_frame, verdict
from moon.results import RunResult


def run(method, density, moon, seed, acc, ece, temperature, alphas=(None, 0.2, 0.6)):
    config = {"model": "mlp", "method": method, "density": density, "unknown_class": moon,
              "seed": seed, "epochs": len(alphas)}
    history = [{"epoch": i + 1, "train_acc": acc - 0.01 * (len(alphas) - 1 - i), "alpha": a,
                "val_ece": ece, "val_temperature": temperature, "unknown_mass": 1e-4 if moon else None}
               for i, a in enumerate(alphas)]
    return RunResult(config=config, status="complete", history=history,
                     id={"ece": ece, "temperature": temperature})


def test_verdict_from_runs():
    runs = [run("dense", 1.0, False, s, 0.997, 0.05, 1.7) for s in (0, 1)]
    runs += [run("rigl", 0.05, False, s, 0.96, 0.04 + 0.02 * s, 1.4) for s in (0, 1)]
    runs += [run("rigl", 0.05, True, s, 0.96, 0.03, 1.3) for s in (0, 1)]
    frame = regime_frame(runs)
    assert len(frame) == 6
    gaps = premise(frame)
    assert gaps["diff"].tolist() == pytest.approx([-0.01, 0.01])     # paired by seed
    v = verdict(frame)
    assert v["fits"] and v["overconfident"] and v["premise_share"] == 0.5
    assert v["train_error_at_alpha_half"] == pytest.approx([0.04, 0.04])  # epoch 3: acc 0.96


def test_regime_contrast_is_read_within_studies_not_pooled():
    """Simpson: two clusters whose own correlations are positive but whose pooled one is negative
    (the second study sits at higher temperatures and lower ECE changes). The reading must rest
    on the within-study r and call the pooled one what it is."""
    import numpy as np
    import pandas as pd

    from moon.report.conclusions import temperature_link_text
    from moon.report.regime import temperature_link

    rng = np.random.default_rng(0)

    def study(t0, c0):
        rows = []
        for seed in range(12):
            t = t0 + 0.05 * seed
            change = c0 + 0.02 * (t - t0) + rng.normal(0, 0.002)
            for moon in (False, True):
                rows.append({"model": "mlp", "method": "rigl", "density": 0.05, "seed": seed,
                             "unknown_class": moon, "averaging": moon, "epochs": 100,
                             "id.temperature": t, "id.ece": 0.05 + (change if moon else 0)})
        return pd.DataFrame(rows)

    link = temperature_link({"short": study(0.8, 0.02), "long": study(2.0, -0.03)})
    assert link["r"] < 0                                     # pooled: falls, as "predicted"
    assert all(c["r"] > 0.9 for c in link["by_study"].values())   # within each: rises
    assert link["by_study"]["short"]["n"] == 12 and link["consistent"]
    text = temperature_link_text(link)
    assert "not supported in every study" in text and "Simpson" in text and "Prediction" in text


def test_regime_contrast_is_also_read_within_settings():
    """Within one study, two settings: across them r is positive (the second sits at a higher
    temperature and a higher ECE change), within each it is negative. The within-setting r must
    be computed on centred pairs, with its own interval, and named in the text."""
    import numpy as np
    import pandas as pd

    from moon.report.conclusions import temperature_link_text
    from moon.report.regime import temperature_link

    rng = np.random.default_rng(1)
    rows = []
    for method, t0, c0 in (("rigl", 1.0, -0.02), ("set", 1.5, 0.02)):
        for seed in range(10):
            t = t0 + 0.03 * seed
            change = c0 - 0.05 * (t - t0) + rng.normal(0, 0.001)
            for moon in (False, True):
                rows.append({"model": "mlp", "method": method, "density": 0.05, "seed": seed,
                             "unknown_class": moon, "averaging": moon, "epochs": 100,
                             "id.temperature": t, "id.ece": 0.05 + (change if moon else 0)})
    link = temperature_link({"paper": pd.DataFrame(rows)})
    assert link["by_study"]["paper"]["r"] > 0.5
    within = link["within_setting"]["paper"]
    assert within["r"] < -0.9 and within["settings"] == 2 and within["n"] == 20
    assert within["low"] < within["r"] < within["high"] < 0
    text = temperature_link_text(link)
    assert f"r = {within['r']:+.2f}".replace("-", "−") in text and "within settings" in text
