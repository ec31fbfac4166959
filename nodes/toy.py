"""The toy I2V world's nodes (engine: cil_comfy.toy): loader, conditioning and a held-out video."""

from __future__ import annotations

from comfy_api.latest import io

from cil_comfy.toy import (
    HELD_OUT_COUNT,
    check_model_name,
    load_toy,
    toy_conditioning,
    toy_model_names,
    toy_world_video,
)

from .common import Stats, check_inputs, require_inputs, show_text

CATEGORY = "CIL/toy"

TIP_MODEL_NAME = (
    "A toy I2V model: the pack's shipped weights (trained on procedural 32x32 sprite videos by 'cil toy-train'), "
    "or a .safetensors file you trained into models/cil_toy. No download needed."
)


class ToyModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_ToyModelLoader",
            display_name="Toy I2V Model Loader",
            category=CATEGORY,
            description=(
                "Loads one of the pack's toy image-to-video models as a ComfyUI MODEL that KSampler, SamplerCustomAdvanced "
                "and the CIL samplers run, with its VAE (an exact pixel <-> latent codec that VAE Encode/Decode accept) and "
                "the toy world's Analytic-Init stats. Small enough to sample on a CPU in seconds."
            ),
            inputs=[io.Combo.Input("model_name", options=toy_model_names(), tooltip=TIP_MODEL_NAME)],
            outputs=[
                io.Model.Output(display_name="MODEL"),
                io.Vae.Output(display_name="VAE"),
                Stats.Output(display_name="stats", tooltip="Analytic-Init stats of the toy world (None when they do not fit this model: see info)."),
                io.String.Output(display_name="info"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return check_inputs(cls, values, known_model)

    @classmethod
    def execute(cls, model_name) -> io.NodeOutput:
        require_inputs(cls, locals(), known_model)
        model, vae, stats, info = load_toy(model_name)
        show_text(cls, info)
        return io.NodeOutput(model, vae, stats, info)


class ToyImageToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_ToyImageToVideo",
            display_name="Toy I2V Conditioning",
            category=CATEGORY,
            description=(
                "Image-to-video conditioning for the toy models (like SVD_img2vid_Conditioning): the start image, resized and "
                "encoded with the toy VAE, is concatenated to every frame of the noisy video; noise_level is the conditional "
                "image's noise β (SVD's augmentation level). The toy has no unconditional mode, so negative equals positive "
                "and cfg has no effect (use cfg 1)."
            ),
            inputs=[
                io.Vae.Input("vae", tooltip="The VAE from Toy I2V Model Loader."),
                io.Image.Input("start_image", tooltip="The first frame; only the first image of a batch is used. Resized to width x height."),
                io.Int.Input("width", default=32, min=16, max=512, step=16, tooltip="Video width in pixels. The toy models run at the size they were trained on (32 for the shipped ones; the loader's info says)."),
                io.Int.Input("height", default=32, min=16, max=512, step=16, tooltip="Video height in pixels. The toy models run at the size they were trained on (32 for the shipped ones; the loader's info says)."),
                io.Int.Input("frames", default=8, min=2, max=64, tooltip="Video length: the frames the toy model was trained on (8 for the shipped ones; the loader's info says)."),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip="Videos sampled at once from the same start image."),
                io.Combo.Input("crop", options=["center", "disabled"], default="center", tooltip="'center': crop the image to the video's aspect ratio before resizing; 'disabled': stretch."),
                io.Float.Input("noise_level", default=0.0, min=0.0, max=100.0, step=0.01, tooltip="β: the start image latent gets β·ε (model space) and the model is told β, as in training. 0 = clean image (how the paper samples)."),
                io.Int.Input("noise_seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of ε for noise_level > 0 (ignored at 0)."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive"),
                io.Conditioning.Output(display_name="negative"),
                io.Latent.Output(display_name="latent"),
            ],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return check_inputs(cls, values)

    @classmethod
    def execute(cls, vae, start_image, width, height, frames, batch_size, crop, noise_level, noise_seed) -> io.NodeOutput:
        require_inputs(cls, locals())
        return io.NodeOutput(*toy_conditioning(vae, start_image, width, height, frames, batch_size, crop, noise_level, noise_seed))


class ToyWorldVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_ToyWorldVideo",
            display_name="Toy World Video",
            category=CATEGORY,
            description=(
                "A held-out video of the toy world the toy models were trained on (procedural sprites over textured "
                "backgrounds; never seen in training): an in-distribution start frame, or the reference video of the Leakage Probe."
            ),
            inputs=[
                io.Combo.Input("model_name", options=toy_model_names(), tooltip="The toy model whose world (frames, size, scene statistics) to draw from."),
                io.Int.Input("index", default=0, min=0, max=HELD_OUT_COUNT - 1, tooltip=f"Which video of the toy world's {HELD_OUT_COUNT}-video held-out set (deterministic)."),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="The video as IMAGE frames [F, H, W, 3]."),
                io.Image.Output(display_name="first_frame", tooltip="Frame 0, the start image for Toy I2V Conditioning."),
            ],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return check_inputs(cls, values, known_model)

    @classmethod
    def execute(cls, model_name, index) -> io.NodeOutput:
        require_inputs(cls, locals(), known_model)
        frames = toy_world_video(model_name, index)
        return io.NodeOutput(frames, frames[:1])


def known_model(values) -> bool | str:
    """The toy model's own message (which models there are) before the combo check."""
    return check_model_name(values.get("model_name"))


NODES = [ToyModelLoader, ToyImageToVideo, ToyWorldVideo]
