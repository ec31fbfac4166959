"""The cil_core names this package uses, imported so that it works both ways it is loaded:

* as the installed top-level ``cil_tools.train`` (the ``cil`` command, tests), and
* as ``<pack>.cil_tools.train`` inside ComfyUI (the training node), where the pack folder is not
  on sys.path and cil_core must be reached relative to the pack.
"""

try:  # inside the custom-node pack
    from ...cil_core import families, losses, stats_io, timenoise, validation
except ImportError:  # top-level cil_tools (installed, or run from a checkout)
    from cil_core import families, losses, stats_io, timenoise, validation

CILValueError = validation.CILValueError
DiffusionFamily, EDM, RectifiedFlow, VPDiscrete = families.DiffusionFamily, families.EDM, families.RectifiedFlow, families.VPDiscrete
dynamicrafter_family, svd_family, wan_family = families.dynamicrafter_family, families.svd_family, families.wan_family
LossConfig, diffusion_loss = losses.LossConfig, losses.diffusion_loss
TimeNoiseConfig = timenoise.TimeNoiseConfig
atomic_save_safetensors = stats_io.atomic_save_safetensors
