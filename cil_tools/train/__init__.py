"""TimeNoise fine-tuning (issue 5): a model-agnostic loop, ComfyUI model adapters, video data.

Headless: ``cil train --config FILE [--resume]``. In a graph: the ``CIL_TimeNoiseTrain`` node.
Only ``comfy_host`` and ``comfy_adapters`` touch ComfyUI, and only when called.
"""

from .config import TrainConfig, config_from_dict, load_config

__all__ = ["TrainConfig", "config_from_dict", "load_config"]
