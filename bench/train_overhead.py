"""Training throughput of the trainer against a plain PyTorch loop, in one run (issue: trainer).

On Fashion-MNIST-shaped data (random uint8 images, 28x28, 10 classes) and batch 128, for `mlp` and
`lenet5`, it measures images per second of

  (a) a plain dense PyTorch loop (forward, cross-entropy, backward, SGD step),
  (a') the same loop with PyTorch's fused SGD, which our trainer uses,
  (b) our trainer, dense,
  (c) our trainer, RigL + unknown class + weight averaging at density 0.05,

and prints (b)/(a) and (c)/(a) (target: (c)/(a) >= 0.90), and (c)/(a'), the cost of masking and
MOON alone, without the fused optimizer's gain. Each measurement is the best of
``--repeats`` timed epochs after one warm-up epoch, so a busy machine disturbs it less.

A shared virtual machine's speed drifts by 20-30% within minutes, more than the effect measured,
so the four loops run in ``--rounds`` interleaved rounds and the ratios are taken within a round
(neighbouring measurements share the machine's state): the line per model gives the median
ratio over the rounds with its range.

    python bench/train_overhead.py [--images 20000] [--repeats 3] [--rounds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from moon.config import RunConfig
from moon.data import ID_SETS, IDData
from moon.loaders import TensorLoader
from moon.models import model_for
from moon.train import Trainer


def synthetic_fashion(n: int, seed: int = 0) -> IDData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return IDData("fashion_mnist", 10, tuple(str(i) for i in range(10)), x, y, x[:512], y[:512],
                  x[:512], y[:512], (0.5,), (0.29,), ID_SETS["fashion_mnist"])


def plain_loop(cfg: RunConfig, data: IDData, device: torch.device, repeats: int,
               fused: bool = False) -> float:
    torch.manual_seed(0)
    model = model_for(cfg).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=5e-4, fused=fused or None)
    loader = TensorLoader(data.train_x, data.train_y, data.mean, data.std, cfg.batch_size,
                          shuffle=True, device=device)
    best = 0.0
    for epoch in range(repeats + 1):
        model.train()
        start = time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        if epoch:  # the first epoch is a warm-up
            best = max(best, len(data.train_y) / (time.perf_counter() - start))
    return best


def trainer_loop(cfg: RunConfig, data: IDData, device: torch.device, repeats: int) -> float:
    trainer = Trainer(cfg, data, device, out_dir=None, progress=False)
    best = 0.0
    for epoch in range(1, repeats + 2):
        start = time.perf_counter()
        trainer._train_epoch(epoch, _NoBar())
        _sync(device)
        if epoch > 1:
            best = max(best, len(data.train_y) / (time.perf_counter() - start))
    return best


class _NoBar:
    def set_description(self, *a, **k): ...
    def set_postfix(self, *a, **k): ...
    def update(self, *a, **k): ...


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    import statistics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of the four loops; ratios are medians over them")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="mlp,lenet5")
    args = parser.parse_args()
    device = torch.device(args.device)
    data = synthetic_fashion(args.images)
    print(f"device={device} threads={torch.get_num_threads()} images/epoch={args.images} "
          f"batch=128 rounds={args.rounds}")
    print(f"{'model':8s} {'(a) plain':>10s} {'(a) fused':>10s} {'(b) dense':>10s} "
          f"{'(c) moon':>10s} {'(b)/(a)':>8s} {'(c)/(a)':>16s} {'(c)/(a)fused':>12s}   "
          "(img/s: medians; ratio: median [min, max] over rounds)")
    for name in args.models.split(","):
        # epochs=repeats+1 so the timed epochs cover the schedule's update and averaging phases
        common = dict(model=name, epochs=args.repeats + 1, batch_size=128, device=args.device)
        dense = RunConfig(method="dense", density=1.0, unknown_class=False, averaging=False, **common)
        moon = RunConfig(method="rigl", density=0.05, unknown_class=True, averaging=True,
                         warmup_epochs=1, average_epochs=1, **common)
        rounds = []
        for _ in range(args.rounds):
            rounds.append((plain_loop(dense, data, device, args.repeats),
                           plain_loop(dense, data, device, args.repeats, fused=True),
                           trainer_loop(dense, data, device, args.repeats),
                           trainer_loop(moon, data, device, args.repeats)))
        a, af, b, c = (statistics.median(r[i] for r in rounds) for i in range(4))
        ca = [r[3] / r[0] for r in rounds]
        ratio = lambda values: statistics.median(values)          # noqa: E731
        print(f"{name:8s} {a:10.0f} {af:10.0f} {b:10.0f} {c:10.0f} "
              f"{ratio([r[2] / r[0] for r in rounds]):8.2f} "
              f"{ratio(ca):5.2f} [{min(ca):.2f}, {max(ca):.2f}] "
              f"{ratio([r[3] / r[1] for r in rounds]):12.2f}")


if __name__ == "__main__":
    main()
