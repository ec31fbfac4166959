"""Headless tools (the ``cil`` command). ComfyUI is imported only by the subcommands that need
its model code (``train``, ``probe`` on a checkpoint), from COMFYUI_PATH, at run time."""
