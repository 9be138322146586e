"""vrvq_hf: the VRVQ variable-bitrate neural audio codec as a Hugging Face Transformers model."""

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

__all__ = [
    "VRVQConfig",
    "VRVQModel",
    "VRVQPreTrainedModel",
    "VRVQFeatureExtractor",
    "VRVQEncoderOutput",
    "VRVQDecoderOutput",
    "VRVQOutput",
]
