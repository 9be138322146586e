"""Cost of the GAN discriminator at several widths on CPU.

For each sampling rate and width it reports the parameter count and the median wall time of
* ``fwd``: one forward pass over a batch (no grad),
* ``fwd+bwd``: forward + backward of a batch (gradients to the weights and the input),
* ``D+G step``: the discriminator's share of one GAN training step: the D update
  (real + detached fake forward, LSGAN loss, backward) plus the G side (real forward without
  grad, fake forward, adversarial + feature-matching loss, backward to the fake audio).

Load on a shared machine inflates wall times; process CPU time is reported beside them.

Usage: ``nice python scripts/benchmark_discriminators.py [--widths 1 0.25 0.125] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from vrvq_hf.training.discriminators import Discriminator
from vrvq_hf.training.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss


def _median_seconds(fn: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process CPU seconds of ``fn`` over ``repeats`` calls."""
    fn()  # warm-up (allocations, kernel selection)
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _measure(disc: Discriminator, batch: int, length: int, repeats: int) -> dict[str, tuple[float, float]]:
    gen = torch.Generator().manual_seed(0)
    real = 0.3 * torch.randn(batch, 1, length, generator=gen)
    fake_base = 0.3 * torch.randn(batch, 1, length, generator=gen)

    def forward() -> None:
        with torch.no_grad():
            disc(real)

    def forward_backward() -> None:
        disc.zero_grad(set_to_none=True)
        x = fake_base.clone().requires_grad_(True)
        sum(maps[-1].mean() for maps in disc(x)).backward()

    def gan_step() -> None:
        disc.zero_grad(set_to_none=True)
        discriminator_loss(disc(real), disc(fake_base)).backward()
        fake = fake_base.clone().requires_grad_(True)
        with torch.no_grad():
            real_out = disc(real)
        fake_out = disc(fake)
        (generator_adversarial_loss(fake_out) + 2.0 * feature_matching_loss(real_out, fake_out)).backward()

    return {
        "fwd": _median_seconds(forward, repeats),
        "fwd+bwd": _median_seconds(forward_backward, repeats),
        "D+G step": _median_seconds(gan_step, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.25, 0.125])
    parser.add_argument("--sampling-rates", type=int, nargs="+", default=[24000, 44100])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.38)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(
        f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, batch {args.batch} x {args.seconds} s"
    )
    print("Times are median wall seconds / process CPU seconds (CPU time is steadier on a shared machine).")
    print("| sampling rate | width | params | fwd (s) | fwd+bwd (s) | D+G step (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for sampling_rate in args.sampling_rates:
        length = round(args.seconds * sampling_rate)
        for width in args.widths:
            disc = Discriminator(width=width)
            params = sum(p.numel() for p in disc.parameters())
            t = _measure(disc, args.batch, length, args.repeats)
            cells = " | ".join(f"{wall:.2f} / {cpu:.2f}" for wall, cpu in t.values())
            print(
                f"| {sampling_rate} ({length} samples) | {width:g} | {params / 1e6:.2f} M | {cells} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
