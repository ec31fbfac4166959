"""The toy image-to-video world: procedural videos, a tiny concat-conditioned video denoiser,
metrics with ground truth, training (``cil toy-train``) and the demo report (``cil demo``).

Pure torch + stdlib + Pillow/tqdm; never imports ComfyUI. Public entry points for other
parts of the pack (e.g. a ComfyUI loader node): ``cil_toy.weights_io.load_toy_model``.
"""
