"""The pack's bridge to ComfyUI's own code: what the nodes and the headless commands share.

Modules, one idea each:
    host            the one boot sequence of ComfyUI outside its main.py (no ComfyUI import at load)
    loaders         load model files with ComfyUI's own loaders (headless commands)
    paths           the pack's models folders (cil_stats, cil_toy), the files in them, and the
                    one real-path check of every user-named file (no symlink leads out)
    models          a ComfyUI MODEL read in cil_core terms: diffusion family, latent spaces
    sampling        late start + Analytic-Init through ComfyUI's own samplers
    timenoise       TimeNoise at inference: an APPLY_MODEL wrapper
    probe           the Leakage Probe engine inside one CFGGuider preparation
    probe_blocks    the probe in blocks of grid times: bounded memory, checked before it runs
    stats           Analytic-Init stats through a VAE; load / save by name
    dynamicrafter   our stats as kijai's DynamiCrafterWrapper init noise
    toy             the toy world as ComfyUI MODEL / VAE objects
    train_adapters  the trainer's model adapters on ComfyUI's BaseModel.apply_model
    training        TimeNoise fine-tuning of a ComfyUI model (node and ``cil train``)

Every module but ``host`` may import ComfyUI at load: import them in a process where ComfyUI is
importable (ComfyUI itself, or after ``cil_comfy.host.boot``).
"""
