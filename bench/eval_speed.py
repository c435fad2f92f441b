"""Evaluation speed (issue: evaluation): extract + every detector + every metric for LeNet-5 on the
10k Fashion-MNIST test set and every offline OOD set, on the CPU. Prints the seconds and the share
spent in each part. Target: under 30 s in all.

What a run's evaluation does, part by part: features are extracted once per dataset; the detectors
(every one of :data:`moon.ood.registry.DETECTORS`) and the OOD sets (the registry's offline sets for
Fashion-MNIST, ``RunConfig().ood_set_list``) are whatever the registries hold now; KNN and
Mahalanobis work on the fitted subset (``fit_samples``) in torch; the DICE sweep and the unknown
mass are timed together. Fashion-MNIST is found like every run finds it (``$MOON_DATA``/``data/``,
then ``/usr/share/datasets/fashion-mnist``).

    python bench/eval_speed.py [--model lenet5] [--checkpoint runs/x/model.pt] [--device cpu]

Without ``--checkpoint`` the model is freshly initialised: the cost does not depend on the weights.
Needs the real Fashion-MNIST (``make data``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

from moon.config import RunConfig
from moon.data import load_id
from moon.evaluate import (_loader, capped, detector_options, dice_at_sweep, fit_subset,
                           score_curves, unknown_mass)
from moon.metrics import auroc, calibration, fit_temperature, ood_metrics, released_ece
from moon.models import model_for
from moon.ood.registry import make_detector
from moon.ood.sets import group_means, load_ood
from moon.outputs import extract

TIMES: dict[str, float] = defaultdict(float)


@contextmanager
def timed(part: str):
    start = time.perf_counter()
    yield
    TIMES[part] += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cfg = RunConfig(model=args.model, device=args.device)   # auto: every detector, offline sets
    device = torch.device(args.device)
    data = load_id(cfg.dataset)
    torch.manual_seed(0)
    model = model_for(cfg).to(device).eval()
    if args.checkpoint:
        model.load_state_dict(torch.load(args.checkpoint, weights_only=True)["model"])
    total = time.perf_counter()
    K = data.num_classes
    with timed("import pytorch-ood (once per process)"):
        import pytorch_ood.detector  # noqa: F401
    with timed("extract: ID test, val, fit subset"):
        test_loader = _loader(data.test_x, data.test_y, data, cfg, device)
        test = extract(model, test_loader, device)
        val = extract(model, _loader(data.val_x, data.val_y, data, cfg, device), device)
        train = extract(model, _loader(*fit_subset(data, cfg), data, cfg, device), device)
    with timed("calibration (ECE both ways, temperature)"):
        calibration(test.logits, test.labels, num_known=K)
        released_ece(test.logits, test.labels)
        temperature = fit_temperature(val.logits, val.labels, num_known=K)
        calibration(test.logits[:, :K] / temperature, test.labels, num_known=K)
    options = detector_options(cfg, temperature=temperature)
    detectors = {n: make_detector(n, model, K, **options[n]) for n in cfg.detector_list}
    id_scores, ood_scores, ood, sweep_auroc = {}, {}, {}, {}
    for name, det in detectors.items():
        if det.needs_fit:
            with timed(f"fit: {name}"):
                det.fit(train)
        with timed(f"score: {name}"):
            id_scores[name] = det.score(test, test_loader)
    with timed("DICE sweep (6 p) + unknown mass"):
        sweep = dice_at_sweep(detectors.get("dice"))
        sweep_id = {p: d.score(test) for p, d in sweep.items()}
        unknown_mass(test.logits, K)
    for set_name in cfg.ood_set_list:
        with timed("build OOD sets"):
            x, _ = capped(load_ood(set_name, data, seed=cfg.seed), None, 0)
        with timed("extract: OOD sets"):
            loader = _loader(x, None, data, cfg, device)
            outputs = extract(model, loader, device)
        ood_scores[set_name] = {}
        for name, det in detectors.items():
            with timed(f"score: {name}"):
                ood_scores[set_name][name] = det.score(outputs, loader)
        with timed("OOD metrics"):
            ood[set_name] = {d: dataclasses.asdict(ood_metrics(id_scores[d], s))
                             for d, s in ood_scores[set_name].items()}
        with timed("DICE sweep (6 p) + unknown mass"):
            sweep_auroc[set_name] = {p: auroc(sweep_id[p], d.score(outputs))
                                     for p, d in sweep.items()}
            unknown_mass(outputs.logits, K)
    with timed("OOD metrics"):
        group_means(ood)
    with timed("curves (ROC, histograms)"):
        score_curves(id_scores, ood_scores)
    total = time.perf_counter() - total
    sizes = ", ".join(f"{s} ({len(next(iter(v.values())))})" for s, v in ood_scores.items())
    print(f"{args.model} on {device}, threads={torch.get_num_threads()}: {len(test.labels)} test "
          f"images, {len(train.labels)} fit images; OOD sets {sizes}; "
          f"{len(detectors)} detectors: {', '.join(detectors)}")
    groups = defaultdict(float)
    for part, seconds in TIMES.items():
        groups[part.split(":")[0] if part.startswith(("fit:", "score:")) else part] += seconds
    print("  " + ", ".join(f"{g} {s:.2f} s ({100 * s / total:.0f} %)" for g, s in
                           sorted(groups.items(), key=lambda kv: -kv[1])))
    for part, seconds in sorted(TIMES.items(), key=lambda kv: -kv[1]):
        print(f"  {part:40s} {seconds:7.2f} s  {100 * seconds / total:5.1f} %")
    print(f"total {total:.2f} s (target < 30 s)")


if __name__ == "__main__":
    main()
