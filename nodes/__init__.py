"""ComfyUI adapters (V3 schema). Thin: unpack ComfyUI containers, call cil_core, wrap results.

Only relative imports here: ComfyUI has a top-level module called ``nodes`` too.
"""
