"""Rate-distortion evaluation of VRVQ: metrics, BD-rate, the VBR/CBR sweep, an Opus anchor, figures,
the residual quantizer's per-stage geometry and the phase/magnitude swap.

Plots are imported on demand (``vrvq_hf.evaluation.plots``) so that matplotlib stays optional.
"""

from .anchors import OpusUnavailableError, opus_round_trip
from .bd_rate import bd_quality, bd_rate, is_monotone
from .metrics import (
    METRICS,
    MetricInfo,
    compute_metrics,
    estoi,
    l1_distance,
    mel_distance,
    pesq_wb,
    si_sdr,
    stft_distance,
    stoi,
    visqol,
)
from .phase_swap import PhaseSwapResult, phase_magnitude_swap, phase_swap_metrics
from .rvq_geometry import QuantizerGeometry, quantizer_geometry
from .sweep import (
    CHEAP_METRICS,
    DEFAULT_LEVELS,
    Clip,
    ClipSource,
    OperatingPoint,
    SamplingRateMismatchError,
    SweepResult,
    dataset_sources,
    folder_sources,
    run_evaluation,
    run_sweep,
    summarize,
    summary_markdown,
)

__all__ = [
    "CHEAP_METRICS",
    "DEFAULT_LEVELS",
    "METRICS",
    "Clip",
    "ClipSource",
    "MetricInfo",
    "OperatingPoint",
    "OpusUnavailableError",
    "PhaseSwapResult",
    "QuantizerGeometry",
    "SamplingRateMismatchError",
    "SweepResult",
    "bd_quality",
    "bd_rate",
    "is_monotone",
    "compute_metrics",
    "dataset_sources",
    "estoi",
    "folder_sources",
    "l1_distance",
    "mel_distance",
    "opus_round_trip",
    "pesq_wb",
    "phase_magnitude_swap",
    "phase_swap_metrics",
    "quantizer_geometry",
    "run_evaluation",
    "run_sweep",
    "si_sdr",
    "stft_distance",
    "stoi",
    "summarize",
    "summary_markdown",
    "visqol",
]
