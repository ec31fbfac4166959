"""TimeNoise Conditioning (paper Sec. 4.2): the node that patches a MODEL with cil_comfy.timenoise."""

from __future__ import annotations

from comfy_api.latest import io

from cil_comfy.timenoise import NOISE_SHAPES, patch_timenoise
from cil_core.timenoise import BETA_MODES

from .common import check_inputs, require_inputs, show_text

TIP_BETA_M = (
    "Largest noise std β_m. Official values: SVD 15 (raw VAE latent), DynamiCrafter 100, VideoCrafter1 25. Use the "
    "value the model was fine-tuned with. 0 disables the noise."
)


class TimeNoiseConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_TimeNoiseConditioning",
            display_name="TimeNoise Conditioning",
            category="CIL/timenoise",
            description=(
                "Patches the MODEL so that at every denoising call the conditional image (concat latent, and CLIP image "
                "tokens where the model has them) of the positive chunks gets noise β_s·ε with β_s following the TimeNoise "
                "distribution at that call's t (paper Sec. 4.2). It is what a model FINE-TUNED WITH TimeNoise expects at "
                "inference; on stock models it is an inference-time EXPERIMENT (the paper applies no TimeNoise at inference)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="A TimeNoise-fine-tuned model (intended use) or a stock concat I2V model (experiment)."),
                io.Float.Input("beta_m", default=15.0, min=0.0, max=1000.0, step=0.1, tooltip=TIP_BETA_M),
                io.Float.Input("a", default=5.0, min=0.01, max=100.0, step=0.01, tooltip="Shape of μ(t) = 2t^a − 1: 1 linear, >1 convex (official 5: little noise until late t), <1 concave."),
                io.Float.Input("s", default=1.0, min=0.01, max=10.0, step=0.01, tooltip="Std of the logit-normal draw (official 1)."),
                io.Combo.Input("mode", options=list(BETA_MODES), default="sampled", tooltip="'sampled': β_s drawn at every call as in training. 'quantile': the deterministic q-quantile of β_s at t."),
                io.Float.Input("quantile", default=0.5, min=0.001, max=0.999, step=0.001, tooltip="q for mode 'quantile' (0.5 = the median β_m·sigmoid(μ(t))); ignored when sampled."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the condition noise; each call's draw depends only on this seed and its sigma."),
                io.Combo.Input("noise_shape", options=list(NOISE_SHAPES), default="per_element", tooltip="'per_element': ε ~ N(0, I) on the image latent (paper). 'per_sample_scalar': one Gaussian number per video, as the official SVD training code does."),
                io.Boolean.Input("noise_clip_tokens", default=False, tooltip="Also noise the CLIP image tokens where the model keeps them apart (SVD's image embedding, Wan 2.1's clip_fea)."),
            ],
            outputs=[io.Model.Output(display_name="MODEL"), io.String.Output(display_name="info")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return check_inputs(cls, values)

    @classmethod
    def execute(cls, model, beta_m, a, s, mode, quantile, seed, noise_shape, noise_clip_tokens) -> io.NodeOutput:
        require_inputs(cls, locals())
        out, info = patch_timenoise(model, beta_m, a, s, mode, quantile, seed, noise_shape, noise_clip_tokens)
        show_text(cls, info)
        return io.NodeOutput(out, info)


NODES = [TimeNoiseConditioning]
