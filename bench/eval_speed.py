"""Evaluation speed (issue: evaluation): extract + every detector + every metric for LeNet-5 on the
10k Fashion-MNIST test set and every offline OOD set, on the CPU. Prints the seconds and the share
spent in each part. Target: under 30 s in all.

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
from moon.evaluate import (_loader, capped, detector_options, fit_subset, near_far_means,
                           score_curves)
from moon.ood.detectors import make_detector
from moon.metrics import calibration, ood_metrics
from moon.models import model_for
from moon.ood.sets import load_ood
from moon.train import extract

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
    cfg = RunConfig(model=args.model, device=args.device)
    device = torch.device(args.device)
    data = load_id(cfg.dataset)
    torch.manual_seed(0)
    model = model_for(cfg).to(device).eval()
    if args.checkpoint:
        model.load_state_dict(torch.load(args.checkpoint, weights_only=True)["model"])
    total = time.perf_counter()
    K = data.num_classes
    with timed("extract ID test"):
        test_loader = _loader(data.test_x, data.test_y, data, cfg, device)
        test = extract(model, test_loader, device)
    with timed("extract ID train (for fitting)"):
        train = extract(model, _loader(*fit_subset(data, cfg), data, cfg, device), device)
    options = detector_options(cfg)
    detectors = {n: make_detector(n, model, K, **options.get(n, {})) for n in cfg.detector_list}
    for name, det in detectors.items():
        with timed(f"fit + score ID: {name}"):
            det.fit(train)
    with timed("calibration metrics"):
        calibration(test.logits, test.labels, num_known=K)
    id_scores, ood_scores, ood = {}, {}, {}
    for name, det in detectors.items():
        with timed(f"fit + score ID: {name}"):
            id_scores[name] = det.score(test, test_loader)
    for set_name in cfg.ood_set_list:
        with timed("build OOD sets"):
            x, _ = capped(load_ood(set_name, data, seed=cfg.seed), None, 0)
        with timed("extract OOD sets"):
            loader = _loader(x, None, data, cfg, device)
            outputs = extract(model, loader, device)
        ood_scores[set_name] = {}
        for name, det in detectors.items():
            with timed(f"score OOD: {name}"):
                ood_scores[set_name][name] = det.score(outputs, loader)
        with timed("OOD metrics"):
            ood[set_name] = {d: dataclasses.asdict(ood_metrics(id_scores[d], s))
                             for d, s in ood_scores[set_name].items()}
    with timed("OOD metrics"):
        near_far_means(ood)
    with timed("curves (ROC, histograms)"):
        score_curves(id_scores, ood_scores)
    total = time.perf_counter() - total
    sizes = ", ".join(f"{s} ({len(next(iter(v.values())))})" for s, v in ood_scores.items())
    print(f"{args.model} on {device}, threads={torch.get_num_threads()}: {len(test.labels)} test "
          f"images; OOD sets {sizes}; detectors {', '.join(detectors)}")
    for part, seconds in sorted(TIMES.items(), key=lambda kv: -kv[1]):
        print(f"  {part:34s} {seconds:7.2f} s  {100 * seconds / total:5.1f} %")
    print(f"total {total:.2f} s (target < 30 s)")


if __name__ == "__main__":
    main()
