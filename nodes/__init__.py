"""ComfyUI adapters (V3 schema). Thin: a node unpacks ComfyUI's containers, makes one call into a
library (mostly ``cil_comfy``) and wraps the result.

This package is only ever imported as ``<pack>.nodes`` (ComfyUI has a top-level ``nodes`` module
too): modules here import each other relatively and the libraries by their absolute names.
"""
