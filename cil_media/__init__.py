"""Pixels in and out, no ComfyUI and no diffusion math: reading videos, measuring pixel motion,
drawing charts. PIL, PyAV and OpenCV are imported inside the functions that need them."""
