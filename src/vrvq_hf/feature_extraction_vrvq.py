"""Turns raw audio (one clip or a list of clips of different lengths) into padded model inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import logging

logger = logging.get_logger(__name__)

_INT_SCALES = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}


class VRVQFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Feature extractor of VRVQ: checks, scales and right-pads mono audio to a multiple of `hop_length`.

    Returns `input_values` of shape `(batch_size, 1, samples)` and `padding_mask` of shape
    `(batch_size, samples)` (1 on real audio, 0 on padding). Pass both to `VRVQModel.encode`: codes of a clip
    do not depend on the padding its batch needs.

    Args:
        feature_size (`int`, defaults to 1): channels of the model input (mono).
        sampling_rate (`int`, defaults to 44100): sampling rate the model expects, in Hz.
        padding_value (`float`, defaults to 0.0): value of padded samples.
        hop_length (`int`, defaults to 512): the model's samples per frame; inputs are padded to a multiple.
    """

    model_input_names = ["input_values", "padding_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 44100,
        padding_value: float = 0.0,
        hop_length: int = 512,
        **kwargs,
    ):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.hop_length = hop_length

    @classmethod
    def from_model_config(cls, config) -> VRVQFeatureExtractor:
        """The feature extractor that matches a `VRVQConfig`."""
        return cls(sampling_rate=config.sampling_rate, hop_length=config.hop_length)

    def __call__(
        self,
        raw_audio: np.ndarray | Sequence[float] | Sequence[np.ndarray],
        sampling_rate: int | None = None,
        downmix: bool = False,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """
        raw_audio: one clip or a list of clips. A clip is a 1-D array (samples,) or a 2-D array
            (channels, samples); more than one channel needs `downmix=True` (channel mean). Float audio is
            expected in [-1, 1]; int16/int32 are scaled to [-1, 1]; other integer types are refused.
        sampling_rate: the rate of `raw_audio` in Hz; must equal the model's (resample with
            `vrvq_hf.audio_io.load_audio` or `resample`). Strongly recommended, to catch mismatches.
        """
        if kwargs.get("truncation"):
            raise ValueError("VRVQFeatureExtractor never truncates audio; cut clips yourself before encoding")
        unknown = set(kwargs) - {"padding", "truncation"}
        if unknown:
            raise TypeError(f"unexpected arguments {sorted(unknown)}")
        if sampling_rate is None:
            logger.warning_once(
                f"VRVQFeatureExtractor was called without `sampling_rate`: the audio is taken to be at "
                f"{self.sampling_rate} Hz unchecked. Pass sampling_rate= so that a mismatch raises instead."
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"audio sampled at {sampling_rate} Hz, but this model needs {self.sampling_rate} Hz; resample first "
                f"(e.g. vrvq_hf.audio_io.load_audio(path, sampling_rate={self.sampling_rate}))"
            )
        clips = self._as_clips(raw_audio)
        mono = [self._check_clip(clip, index, downmix) for index, clip in enumerate(clips)]
        longest = max(len(c) for c in mono)
        padded_length = math.ceil(longest / self.hop_length) * self.hop_length
        values = np.full((len(mono), 1, padded_length), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(mono), padded_length), dtype=np.int64)
        for row, clip in enumerate(mono):
            values[row, 0, : len(clip)] = clip
            mask[row, : len(clip)] = 1
        return BatchFeature({"input_values": values, "padding_mask": mask}, tensor_type=return_tensors)

    @staticmethod
    def _as_clips(raw_audio) -> list:
        if isinstance(raw_audio, (list, tuple)) and raw_audio and not np.isscalar(raw_audio[0]):
            return list(raw_audio)
        if isinstance(raw_audio, (list, tuple)) and not raw_audio:
            raise ValueError("raw_audio is an empty list; give at least one clip")
        return [raw_audio]

    def _check_clip(self, clip, index: int, downmix: bool) -> np.ndarray:
        """One clip -> float32 mono (samples,), or a ValueError that says what is wrong."""
        where = f"clip {index}"
        if hasattr(clip, "detach"):  # a torch tensor
            clip = clip.detach().cpu().numpy()
        array = np.asarray(clip)
        if array.dtype.kind in "iu":
            if array.dtype not in _INT_SCALES:
                raise ValueError(
                    f"{where}: integer audio of dtype {array.dtype} is ambiguous; give float in [-1, 1], int16 or int32"
                )
            array = array.astype(np.float32) / _INT_SCALES[array.dtype]
        elif array.dtype.kind != "f":
            raise ValueError(f"{where}: audio must be numeric, got dtype {array.dtype}")
        if array.ndim == 2:
            channels, samples = array.shape
            if channels > samples:
                raise ValueError(
                    f"{where}: 2-D audio must be (channels, samples), got shape {array.shape}; transpose it"
                )
            if channels > 1 and not downmix:
                raise ValueError(
                    f"{where}: has {channels} channels but the model is mono; pass downmix=True to average them"
                )
            array = array.mean(axis=0)
        elif array.ndim != 1:
            raise ValueError(f"{where}: audio must be 1-D (samples,) or 2-D (channels, samples), got shape {array.shape}")
        if array.size == 0:
            raise ValueError(f"{where}: audio is empty (0 samples)")
        if not np.isfinite(array).all():
            raise ValueError(f"{where}: audio contains NaN or Inf")
        return array.astype(np.float32, copy=False)


__all__ = ["VRVQFeatureExtractor"]
