"""Configuration of the VRVQ codec (a DAC-style codec with variable-bitrate residual VQ)."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig

SURROGATES = ("logcosh", "square", "sigmoid")
LEVEL_DISTRIBUTIONS = ("uniform", "log_uniform")
INITIALIZERS = ("dac", "scale_preserving")


class VRVQConfig(PreTrainedConfig):
    r"""
    Configuration of a [`VRVQModel`]. Defaults reproduce the paper's model: the DAC 44.1 kHz codec with
    8 codebooks and the importance subnet of "Variable Bitrate Residual Vector Quantization for Audio
    Coding" (Chae et al., ICASSP 2025).

    Base codec
        sampling_rate (`int`, defaults to 44100): audio sampling rate in Hz.
        encoder_hidden_size (`int`, defaults to 64): channels of the first encoder convolution; each encoder
            block doubles them, so the latent has `encoder_hidden_size * 2**len(downsampling_ratios)` channels.
        downsampling_ratios (`list[int]`, defaults to `[2, 4, 8, 8]`): encoder strides; the decoder uses them
            reversed. Their product is the hop length (samples per latent frame).
        decoder_hidden_size (`int`, defaults to 1536): channels of the first decoder convolution; each decoder
            block halves them.
        n_codebooks (`int`, defaults to 8): number of residual codebooks Nq.
        codebook_size (`int`, defaults to 1024): codes per codebook (a power of two: log2 of it is the bits per code).
        codebook_dim (`int`, defaults to 8): dimension of the factorised code vectors.
        use_weight_norm (`bool`, defaults to `True`): weight-normalise every convolution (training form).
            [`VRVQModel.fold_weight_norm`] folds the weights and sets this to `False` (export form).
        initializer (`str`, defaults to `"dac"`): `"dac"` (convolutions truncated-normal with
            `initializer_range`, codebooks N(0, 1)) or `"scale_preserving"` (convolutions N(0, 1/fan_in), residual
            branches and the last decoder convolution scaled down), which trains much faster from scratch on CPU.
        initializer_range (`float`, defaults to 0.02): standard deviation of the `"dac"` convolution init.

    Importance subnet and mask
        use_importance_subnet (`bool`, defaults to `True`): `False` gives the constant-bitrate DAC baseline.
        importance_channels (`list[int]`, defaults to `[1024, 512, 128, 32, 8, 1]`): output channels of the
            subnet's (Snake, Conv1d k=3) blocks; the input has the encoder's latent width; the last must be 1.
        detach_importance_input (`bool`, defaults to `False`): stop the subnet's gradient at the encoder.
        surrogate (`str`, defaults to `"logcosh"`): smooth stand-in for the hard mask in the backward pass:
            `"logcosh"` (the paper's), `"square"` (clamp(t, 0, 1)) or `"sigmoid"` (sigmoid(alpha t)).
        surrogate_alpha (`float`, defaults to 2.0): sharpness of the `"logcosh"` and `"sigmoid"` surrogates.
        silence_threshold_db (`float`, *optional*, defaults to `None`): not in the paper. Frames whose input
            RMS, over the frame and its two neighbours, is below this level in dBFS get importance 0, so one
            codebook at every level (like a codec's discontinuous transmission). `None` (the paper's model):
            the subnet alone decides.

    Training recipe (used by `forward` in training mode)
        level_min, level_max (`float`, defaults to 0.125 and 6.0): range of the per-sample random level.
        level_distribution (`str`, defaults to `"uniform"`): `"uniform"` or `"log_uniform"` level sampling.
        full_codebook_rate (`float`, defaults to 0.25): share of each batch that uses all codebooks.
        quantizer_dropout (`float`, defaults to 0.0): DAC quantizer dropout; only for the constant-bitrate
            baseline (`use_importance_subnet=False`), where DAC uses 0.5.
        commitment_loss_weight (`float`, defaults to 0.25), codebook_loss_weight (`float`, defaults to 1.0),
        rate_loss_weight (`float`, defaults to 2.0): weights of the model's own loss terms.
        latent_loss_weight (`float`, defaults to 0.0): weight of an optional term that is not in the paper: the
            squared distance of every prefix sum of stage outputs (first 1, 2, ..., Nq) from the encoder
            latent, relative to the item's mean latent energy (`VRVQOutput.latent_loss`). The paper's VQ
            losses live in each stage's projected code space only; this asks every stage to take away part of
            what the previous ones left. 0 keeps the paper's recipe.
    """

    model_type = "vrvq"

    sampling_rate: int = 44100
    encoder_hidden_size: int = 64
    downsampling_ratios: list[int] | tuple[int, ...] = (2, 4, 8, 8)
    decoder_hidden_size: int = 1536
    n_codebooks: int = 8
    codebook_size: int = 1024
    codebook_dim: int = 8
    use_weight_norm: bool = True
    initializer: str = "dac"
    initializer_range: float = 0.02
    use_importance_subnet: bool = True
    importance_channels: list[int] | tuple[int, ...] = (1024, 512, 128, 32, 8, 1)
    detach_importance_input: bool = False
    surrogate: str = "logcosh"
    surrogate_alpha: float = 2.0
    silence_threshold_db: float | None = None
    level_min: float = 0.125
    level_max: float = 6.0
    level_distribution: str = "uniform"
    full_codebook_rate: float = 0.25
    quantizer_dropout: float = 0.0
    commitment_loss_weight: float = 0.25
    codebook_loss_weight: float = 1.0
    rate_loss_weight: float = 2.0
    latent_loss_weight: float = 0.0

    def __post_init__(self, **kwargs):
        self.downsampling_ratios = [int(r) for r in self.downsampling_ratios]
        self.importance_channels = [int(c) for c in self.importance_channels]
        self._check()
        super().__post_init__(**kwargs)

    def _check(self) -> None:
        def fail(field: str, problem: str) -> None:
            raise ValueError(f"VRVQConfig.{field}: {problem}")

        if self.sampling_rate <= 0:
            fail("sampling_rate", f"must be a positive number of Hz, got {self.sampling_rate}")
        if not self.downsampling_ratios or any(r < 1 for r in self.downsampling_ratios):
            fail("downsampling_ratios", f"must be a non-empty list of positive ints, got {self.downsampling_ratios}")
        if self.encoder_hidden_size < 1:
            fail("encoder_hidden_size", f"must be >= 1, got {self.encoder_hidden_size}")
        depth = len(self.downsampling_ratios)
        if self.decoder_hidden_size < 2**depth or self.decoder_hidden_size % 2**depth:
            fail(
                "decoder_hidden_size",
                f"must be a positive multiple of 2**len(downsampling_ratios) = {2**depth} (each decoder block "
                f"halves it), got {self.decoder_hidden_size}",
            )
        if self.n_codebooks < 1:
            fail("n_codebooks", f"must be >= 1, got {self.n_codebooks}")
        if self.codebook_size < 2 or self.codebook_size & (self.codebook_size - 1):
            fail("codebook_size", f"must be a power of two >= 2 (bits per code = log2), got {self.codebook_size}")
        if self.codebook_dim < 1:
            fail("codebook_dim", f"must be >= 1, got {self.codebook_dim}")
        if self.initializer not in INITIALIZERS:
            fail("initializer", f"must be one of {INITIALIZERS}, got {self.initializer!r}")
        if not self.importance_channels or self.importance_channels[-1] != 1 or min(self.importance_channels) < 1:
            fail("importance_channels", f"must be positive ints ending in 1, got {self.importance_channels}")
        if self.surrogate not in SURROGATES:
            fail("surrogate", f"must be one of {SURROGATES}, got {self.surrogate!r}")
        if not self.surrogate_alpha > 0:
            fail("surrogate_alpha", f"must be > 0, got {self.surrogate_alpha}")
        if self.silence_threshold_db is not None and not (
            isinstance(self.silence_threshold_db, (int, float)) and -200 < self.silence_threshold_db < 0
        ):
            fail("silence_threshold_db", f"must be None or a level in dBFS in (-200, 0), got {self.silence_threshold_db!r}")
        if not 0 < self.level_min < self.level_max:
            fail("level_min", f"need 0 < level_min < level_max, got {self.level_min} and {self.level_max}")
        if self.level_distribution not in LEVEL_DISTRIBUTIONS:
            fail("level_distribution", f"must be one of {LEVEL_DISTRIBUTIONS}, got {self.level_distribution!r}")
        if not 0 <= self.full_codebook_rate <= 1:
            fail("full_codebook_rate", f"must be in [0, 1], got {self.full_codebook_rate}")
        if not 0 <= self.quantizer_dropout <= 1:
            fail("quantizer_dropout", f"must be in [0, 1], got {self.quantizer_dropout}")
        if self.quantizer_dropout > 0 and self.use_importance_subnet:
            fail(
                "quantizer_dropout",
                "is for the constant-bitrate baseline only (use_importance_subnet=False); the VBR model uses 0",
            )
        for name in (
            "commitment_loss_weight", "codebook_loss_weight", "rate_loss_weight", "latent_loss_weight",
            "initializer_range",
        ):
            if getattr(self, name) < 0:
                fail(name, f"must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """As transformers' `from_dict`, which sets keyword overrides (e.g. from `from_pretrained(path,
        silence_threshold_db=-60)`) after construction; they are checked here like constructor values."""
        result = super().from_dict(config_dict, **kwargs)
        (result[0] if isinstance(result, tuple) else result)._check()
        return result

    @property
    def upsampling_ratios(self) -> list[int]:
        """Decoder strides: the encoder's, reversed."""
        return self.downsampling_ratios[::-1]

    @property
    def hidden_size(self) -> int:
        """Channels of the latent the quantizer sees (1024 for the paper's model)."""
        return self.encoder_hidden_size * 2 ** len(self.downsampling_ratios)

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame (512 for the paper's model)."""
        return math.prod(self.downsampling_ratios)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second (44100 / 512 = 86.13 Hz for the paper's model)."""
        return self.sampling_rate / self.hop_length

    @property
    def bits_per_code(self) -> int:
        """Bits of one transmitted code: log2(codebook_size)."""
        return int(math.log2(self.codebook_size))

    @property
    def side_info_bits(self) -> int:
        """Bits per frame that transmit its active-codebook count: ceil(log2(n_codebooks))."""
        return math.ceil(math.log2(self.n_codebooks))

    @property
    def side_info_kbps(self) -> float:
        """Bitrate of the side information alone (0.258 kbps for the paper's model)."""
        return self.side_info_bits * self.frame_rate / 1000

    @property
    def max_kbps(self) -> float:
        """Bitrate with every codebook on every frame, side information included (6.89 + 0.26 kbps)."""
        return (self.n_codebooks * self.bits_per_code + self.side_info_bits) * self.frame_rate / 1000

    @property
    def min_kbps(self) -> float:
        """Bitrate with one codebook on every frame, side information included."""
        return (self.bits_per_code + self.side_info_bits) * self.frame_rate / 1000


__all__ = ["VRVQConfig"]
