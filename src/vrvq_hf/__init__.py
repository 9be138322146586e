"""vrvq_hf: the VRVQ variable-bitrate neural audio codec as a Hugging Face Transformers model."""

import os as _os

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from .configuration_vrvq import VRVQConfig
from .feature_extraction_vrvq import VRVQFeatureExtractor
from .modeling_vrvq import VRVQDecoderOutput, VRVQEncoderOutput, VRVQModel, VRVQOutput, VRVQPreTrainedModel

AutoConfig.register(VRVQConfig.model_type, VRVQConfig, exist_ok=True)
AutoModel.register(VRVQConfig, VRVQModel, exist_ok=True)
AutoFeatureExtractor.register(VRVQConfig, VRVQFeatureExtractor, exist_ok=True)
# save_pretrained then writes `auto_map` and copies the code, so trust_remote_code works without this package.
VRVQConfig.register_for_auto_class()
VRVQModel.register_for_auto_class("AutoModel")
VRVQFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__version__ = "0.1.0"

# The model trained here and shipped inside the package (see MODEL_CARD.md): a folder for from_pretrained.
DEFAULT_MODEL = _os.path.join(_os.path.dirname(__file__), "pretrained", "vrvq-small-24khz")


def load_default_model() -> VRVQModel:
    """The shipped model, in eval mode; a clear error if this installation has none."""
    if not _os.path.isfile(_os.path.join(DEFAULT_MODEL, "config.json")):
        raise FileNotFoundError(f"no shipped model at {DEFAULT_MODEL}; pass a model folder or hub id instead")
    return VRVQModel.from_pretrained(DEFAULT_MODEL).eval()


__all__ = [
    "DEFAULT_MODEL",
    "load_default_model",
    "VRVQConfig",
    "VRVQModel",
    "VRVQPreTrainedModel",
    "VRVQFeatureExtractor",
    "VRVQEncoderOutput",
    "VRVQDecoderOutput",
    "VRVQOutput",
]
