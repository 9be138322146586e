"""Figures of a rate-distortion evaluation (matplotlib, Agg backend: no display needed).

* :func:`plot_rate_distortion` -- VBR against CBR per category for one metric (the paper's Figure 2):
  VBR at its total bitrate (side information included), CBR at its payload bitrate, as in the BD-rate.
* :func:`plot_codebook_usage` -- for one clip at several levels, the active codebooks of every frame over
  time (a filled codebook x frame map), above the clip's log-mel spectrogram.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .metrics import METRICS  # noqa: E402

__all__ = ["log_mel_spectrogram", "plot_codebook_usage", "plot_rate_distortion"]


def plot_rate_distortion(summary: dict[str, Any], metric: str, path: str | os.PathLike, dpi: int = 120) -> Path:
    """One panel per category (from :func:`~vrvq_hf.evaluation.sweep.summarize`): ``metric`` against
    kbps for VBR (levels annotated), CBR (codebook counts annotated) and, in a sweep with them, the baseline
    model's CBR and the Opus anchor; the BD-rate of VBR against CBR in each title."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {sorted(METRICS)}")
    categories = list(dict.fromkeys(p["category"] for p in summary["points"]))
    if not categories:
        raise ValueError("the summary holds no operating points to plot")
    info = METRICS[metric]
    bd = {e["category"]: e["bd_rate_percent"] for e in summary.get("bd_rate", []) if e["metric"] == metric}
    figure, axes = plt.subplots(1, len(categories), figsize=(4.2 * len(categories), 3.6), squeeze=False)
    for axis, category in zip(axes[0], categories):
        for mode, rate_key, style, label in (
            ("vbr", "kbps", "o-", "VBR (total kbps)"),
            ("cbr", "payload_kbps", "s--", "CBR (payload kbps)"),
            ("baseline", "payload_kbps", "^:", "baseline CBR (payload kbps)"),
            ("opus", "kbps", "x-.", "Opus (packet kbps)"),
        ):
            points = [
                p for p in summary["points"]
                if p["category"] == category and p["mode"] == mode and p[metric] is not None and p[rate_key] is not None
            ]
            points.sort(key=lambda p: p[rate_key])
            if not points:
                continue
            x = [p[rate_key] for p in points]
            y = [p[metric] for p in points]
            axis.plot(x, y, style, label=label, markersize=4)
            labels: dict[tuple[float, float], list[str]] = {}
            for p, xi, yi in zip(points, x, y):  # points that coincide (saturated levels) share one label
                labels.setdefault((xi, yi), []).append(p["point"].split("=")[-1])
            for (xi, yi), names in labels.items():
                axis.annotate("/".join(names), (xi, yi), fontsize=6, xytext=(2, 3), textcoords="offset points")
        value = bd.get(category)
        suffix = "" if value is None else f"  (BD-rate {value:+.1f}%)"
        axis.set_title(f"{category}{suffix}", fontsize=9)
        axis.set_xlabel("bitrate (kbps)")
        axis.set_ylabel(f"{info.label} ({'higher' if info.higher_is_better else 'lower'} is better)", fontsize=8)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
        else:
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes, color="gray")
    figure.tight_layout()
    return _save(figure, path, dpi)


def log_mel_spectrogram(audio: np.ndarray, sampling_rate: int, n_mels: int = 80) -> tuple[np.ndarray, float]:
    """log10 mel spectrogram ``(n_mels, frames)`` of mono ``audio`` ``(T,)`` and its frame hop in seconds
    (``vrvq_hf.spectral`` filters; window about 46 ms)."""
    from ..spectral import MultiScaleMelLoss

    window = 1 << int(round(np.log2(sampling_rate * 0.046)))
    window = max(window, 2 * n_mels)
    mel = MultiScaleMelLoss(sampling_rate=sampling_rate, n_mels=(n_mels,), window_lengths=(window,))
    with torch.no_grad():
        spectrogram = mel.log_mel(torch.as_tensor(audio, dtype=torch.float32).view(1, -1), 0)[0]
    return spectrogram.numpy(), mel.hop_lengths[0] / sampling_rate


@torch.inference_mode()
def plot_codebook_usage(
    model: Any,
    audio: np.ndarray | torch.Tensor,
    levels: Sequence[float] = (0.2, 0.5, 1.0, 2.0),
    path: str | os.PathLike = "codebooks.png",
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Codebooks used per frame at each level (one strip per level, kbps in its label) above the log-mel
    spectrogram of ``audio`` ``(T,)`` at ``model.config.sampling_rate``."""
    if not levels:
        raise ValueError("give at least one level")
    config = model.config
    signal = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1)
    if signal.numel() < config.hop_length:
        raise ValueError(f"the clip is shorter than one frame ({config.hop_length} samples)")
    device = next(model.parameters()).device
    model.eval()
    seconds = signal.numel() / config.sampling_rate
    spectrogram, _ = log_mel_spectrogram(signal.numpy(), config.sampling_rate)
    ratios = [1.0] * len(levels) + [2.5]
    figure, axes = plt.subplots(
        len(levels) + 1, 1, figsize=(9, 1.0 * len(levels) + 2.8), sharex=True,
        gridspec_kw={"height_ratios": ratios},
    )
    for axis, level in zip(axes[:-1], levels):
        encoded = model.encode(signal.to(device).view(1, 1, -1), level=float(level))
        counts = encoded.num_codebooks[0].cpu().numpy()
        counts = counts[counts > 0]
        frames_end = counts.size * config.hop_length / config.sampling_rate
        used = np.arange(1, config.n_codebooks + 1)[:, None] <= counts[None, :]  # (Nq, F)
        axis.imshow(
            used, aspect="auto", origin="lower", cmap="Blues", vmin=0, vmax=1.3, interpolation="nearest",
            extent=(0.0, frames_end, 0.5, config.n_codebooks + 0.5),
        )
        axis.set_yticks([1, config.n_codebooks])
        axis.set_ylabel(f"l={level:g}\n{float(encoded.bitrate_kbps[0]):.2f} kbps", fontsize=7, rotation=0,
                        ha="right", va="center")
        axis.tick_params(labelsize=6)
    axes[-1].imshow(
        spectrogram, aspect="auto", origin="lower", cmap="magma", extent=(0.0, seconds, 0, spectrogram.shape[0]),
    )
    axes[-1].set_ylabel("mel band", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0.0, seconds)
    axes[0].set_title(title or "codebooks per frame (blue) and log-mel spectrogram", fontsize=9)
    figure.tight_layout()
    return _save(figure, path, dpi)


def _save(figure: Any, path: str | os.PathLike, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path
