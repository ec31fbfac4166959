"""Analytic-Init for kijai/ComfyUI-DynamiCrafterWrapper (engine: cil_comfy.dynamicrafter)."""

from __future__ import annotations

from comfy_api.latest import io

from cil_comfy.dynamicrafter import dcnoise
from cil_core.stats_io import FIT_POLICIES

from .common import DCNoise, Stats, check_inputs, require_inputs, show_text


class DynamiCrafterInitNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_DynamiCrafterInitNoise",
            display_name="Analytic-Init for DynamiCrafterWrapper",
            category="CIL/dynamicrafter",
            description=(
                "Turns this pack's Analytic-Init stats (any estimate, any resolution) and a start M into the `init_noise` "
                "(DCNOISE) input of kijai's DynamiCrafterI2V node, computed on DynamiCrafter's own ZSNR schedule. "
                "Replaces DynamiCrafter LoadInitNoise, which only knows the two official files."
            ),
            inputs=[
                Stats.Input("stats", tooltip="E[x0] and tr Cov/d of DynamiCrafter latents (×0.18215 SD latents): ours or an official file."),
                io.Int.Input("M", default=940, min=1, max=1000, tooltip="Start timestep (ddpm_from) of 1000. Paper: 940 for the original DynamiCrafter, 1000 for CIL fine-tuned ones (then Analytic-Init is plain N(0, I))."),
                io.Boolean.Input("analytic_init", default=True, tooltip="On: start from mu_p + sigma_p·ε. Off: the wrapper draws plain N(0, I) but still starts at M (naive late start)."),
                io.Int.Input("frames", default=0, min=0, max=1024, tooltip="Latent frames of mu_p; 0 = the stats' own. The wrapper repeats mu_p when the video length is a multiple of it."),
                io.Int.Input("width", default=0, min=0, max=8192, step=8, tooltip="Video width in pixels (latent = width/8); 0 = the stats' own size."),
                io.Int.Input("height", default=0, min=0, max=8192, step=8, tooltip="Video height in pixels (latent = height/8); 0 = the stats' own size."),
                io.Combo.Input("fit", options=list(FIT_POLICIES), default="strict", tooltip="When frames/width/height differ from the stats: 'strict' refuses, 'resample' resamples E[x0] (cil_core's documented rule)."),
            ],
            outputs=[
                DCNoise.Output(display_name="init_noise"),
                io.Int.Output(display_name="width"),
                io.Int.Output(display_name="height"),
                io.String.Output(display_name="info"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return check_inputs(cls, values)

    @classmethod
    def execute(cls, stats, M, analytic_init, frames, width, height, fit) -> io.NodeOutput:
        require_inputs(cls, locals())
        init_noise, width, height, info = dcnoise(stats, M, analytic_init, frames, width, height, fit)
        show_text(cls, info)
        return io.NodeOutput(init_noise, width, height, info)


NODES = [DynamiCrafterInitNoise]
