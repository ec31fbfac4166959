"""comfyui-cil: ComfyUI entry point. Importing this file outside ComfyUI does nothing."""

WEB_DIRECTORY = None


async def comfy_entrypoint():
    """V3 registration: ComfyUI calls this and asks the extension for its node list."""
    from .nodes.extension import CILExtension

    return CILExtension()
