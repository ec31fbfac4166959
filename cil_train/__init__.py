"""TimeNoise fine-tuning: a model-agnostic training loop (LoRA or full), video data, checkpoints.

Headless: ``cil train --config FILE [--resume]``. In a graph: the ``CIL_TimeNoiseTrain`` node.
Model adapters implement ``adapters.TrainAdapter``: ``toy.TinyAdapter`` here (no ComfyUI), the
ComfyUI models' adapters in ``cil_comfy.train_adapters``. Nothing here imports ComfyUI.
"""

from .config import TrainConfig, config_from_dict, load_config

__all__ = ["TrainConfig", "config_from_dict", "load_config"]
