"""Write the pack's workflows from one description each, in both formats:

- ``workflows/<name>.json``: UI format, as the ComfyUI frontend saves it (nodes with ids, positions,
  ``widgets_values`` in the node's widget order — a seed INT gets its "control after generate"
  value right after it, LoadImage its upload widget —, links, groups, version 0.4);
- ``workflows/api/<name>.json``: API format (what "Export (API)" gives and /prompt takes), with
  bypassed nodes removed and their links re-routed as the frontend does, and note nodes dropped.

Widget order and output names come from the running host's node definitions (ComfyUI's own
/object_info data), so run it in the host venv:

    COMFYUI_PATH=/path/to/ComfyUI python workflows/tools/make_workflows.py

The DynamiCrafter workflow needs kijai/ComfyUI-DynamiCrafterWrapper's definitions: its source is
read from CIL_DCWRAPPER_PATH (a temporary copy is loaded, nothing is installed).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "workflows"
FRONTEND_ONLY = {"MarkdownNote", "Note"}  # virtual nodes of the frontend: not in the API prompt
MODE_BYPASS = 4


# --- ComfyUI -----------------------------------------------------------------------------------

def boot_comfyui():
    """ComfyUI from COMFYUI_PATH (CPU) with this pack loaded and, when CIL_DCWRAPPER_PATH names its
    folder, kijai's DynamiCrafterWrapper (a temporary copy), through the pack's one boot sequence."""
    if not os.environ.get("COMFYUI_PATH"):
        raise SystemExit("set COMFYUI_PATH to a ComfyUI checkout")
    sys.argv = [sys.argv[0]]
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))  # the pack's libraries, behind ComfyUI's root (cil_comfy.host)
    from cil_comfy.host import boot_with_nodes

    custom = Path(tempfile.mkdtemp(prefix="cil-wf-"))
    (custom / "comfyui-cil").symlink_to(ROOT, target_is_directory=True)
    packs = [custom / "comfyui-cil"]
    wrapper = os.environ.get("CIL_DCWRAPPER_PATH", "")
    if wrapper and Path(wrapper, "nodes.py").is_file():
        shutil.copytree(wrapper, custom / "ComfyUI-DynamiCrafterWrapper")
        packs.append(custom / "ComfyUI-DynamiCrafterWrapper")
    return boot_with_nodes(os.environ["COMFYUI_PATH"], "cpu", packs=tuple(packs)).nodes


def object_info(nodes, node_type: str) -> dict:
    """The /object_info entry of a node type (server.py node_info), V1 and V3 alike."""
    from comfy_api.internal import _ComfyNodeInternal

    cls = nodes.NODE_CLASS_MAPPINGS[node_type]
    if issubclass(cls, _ComfyNodeInternal):
        return cls.GET_NODE_INFO_V1()
    inputs = cls.INPUT_TYPES()
    return {
        "input": inputs,
        "input_order": {k: list(v.keys()) for k, v in inputs.items()},
        "output": cls.RETURN_TYPES,
        "output_name": getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES),
    }


WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def input_specs(info: dict) -> list[tuple[str, str, dict, bool]]:
    """(name, type, options, optional) of each input in the frontend's order (required, then optional)."""
    out = []
    for section in ("required", "optional"):
        spec = info["input"].get(section, {})
        for name in info.get("input_order", {}).get(section, list(spec)):
            entry = spec[name]
            kind = "COMBO" if isinstance(entry[0], list) else entry[0]
            out.append((name, kind, entry[1] if len(entry) > 1 else {}, section == "optional"))
    return out


def is_widget(kind: str, options: dict) -> bool:
    return kind in WIDGET_TYPES and not options.get("forceInput")


def widget_slots(name: str, kind: str, options: dict) -> int:
    """How many widgets_values entries an input takes (frontend: value, + control / upload widget)."""
    control = options.get("control_after_generate")
    if kind == "INT" and (control if control is not None else name in ("seed", "noise_seed")):
        return 2
    if kind in ("FLOAT", "COMBO") and control:
        return 2
    if kind == "COMBO" and options.get("image_upload"):
        return 2
    return 1


# --- the description -------------------------------------------------------------------------

@dataclass
class Node:
    id: int
    type: str
    pos: tuple[float, float]
    size: tuple[float, float]
    widgets: dict
    links: dict  # input name -> (Node, output slot)
    title: str | None = None
    mode: int = 0
    color: str | None = None
    bgcolor: str | None = None
    controls: dict = field(default_factory=dict)  # seed input -> "fixed"/"randomize"

    def out(self, slot: int = 0) -> tuple["Node", int]:
        return (self, slot)


@dataclass
class Workflow:
    name: str
    nodes: list[Node] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)

    def add(self, type_: str, pos, size=(320, 130), *, title=None, node_mode=0, color=None, bgcolor=None, controls=None, links=None, **widgets) -> Node:
        node = Node(len(self.nodes) + 1, type_, tuple(pos), tuple(size), widgets, dict(links or {}), title, node_mode, color, bgcolor, dict(controls or {}))
        self.nodes.append(node)
        return node

    def note(self, pos, size, text: str) -> Node:
        return self.add("MarkdownNote", pos, size, color="#432", bgcolor="#653", text=text)

    def group(self, title: str, x, y, w, h, color="#3f789e") -> None:
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": [x, y, w, h], "color": color, "font_size": 24, "flags": {}})


# --- emitters ----------------------------------------------------------------------------------

def ui_widgets(node: Node, info: dict | None) -> list:
    if node.type in FRONTEND_ONLY:
        return [node.widgets["text"]]
    values = []
    for name, kind, options, _ in input_specs(info):  # linked widgets keep their value too, as the frontend saves them
        if not is_widget(kind, options):
            continue
        if name not in node.widgets:
            raise KeyError(f"{node.type} #{node.id}: widget {name!r} has no value in the description")
        values.append(node.widgets[name])
        if widget_slots(name, kind, options) == 2:
            values.append("image" if options.get("image_upload") else node.controls.get(name, "fixed"))
    extra = set(node.widgets) - {n for n, *_ in input_specs(info)}
    if extra:
        raise KeyError(f"{node.type} #{node.id}: unknown widget(s) {sorted(extra)}")
    return values


def to_ui(wf: Workflow, infos: dict) -> dict:
    links, link_id = [], 0
    incoming: dict[tuple[int, str], int] = {}
    outgoing: dict[tuple[int, int], list[int]] = {}
    for node in wf.nodes:
        info = infos.get(node.type)
        for name, (src, slot) in node.links.items():
            link_id += 1
            kind = infos[src.type]["output"][slot]
            target_slot = [n for n, k, o, _ in input_specs(info) if not is_widget(k, o) or n in node.links].index(name)
            links.append([link_id, src.id, slot, node.id, target_slot, kind])
            incoming[(node.id, name)] = link_id
            outgoing.setdefault((src.id, slot), []).append(link_id)
    order = topological(wf)
    ui_nodes = []
    for node in wf.nodes:
        info = infos.get(node.type)
        entry = {"id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
                 "order": order[node.id], "mode": node.mode, "inputs": [], "outputs": []}
        if info is not None:
            for name, kind, options, optional in input_specs(info):
                if is_widget(kind, options) and name not in node.links:
                    continue
                socket = {"name": name, "type": kind, "link": incoming.get((node.id, name))}
                if optional:
                    socket["shape"] = 7
                if is_widget(kind, options):
                    socket["widget"] = {"name": name}
                entry["inputs"].append(socket)
            names = info.get("output_name") or info["output"]
            for slot, kind in enumerate(info["output"]):
                entry["outputs"].append({"name": names[slot], "type": kind, "slot_index": slot, "links": outgoing.get((node.id, slot))})
            entry["properties"] = {"Node name for S&R": node.type}
        else:
            entry["properties"] = {}
        entry["widgets_values"] = ui_widgets(node, info)
        for key in ("title", "color", "bgcolor"):
            if getattr(node, key):
                entry[key] = getattr(node, key)
        ui_nodes.append(entry)
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-cil/workflows/{wf.name}")),
        "revision": 0,
        "last_node_id": max(n.id for n in wf.nodes),
        "last_link_id": link_id,
        "nodes": ui_nodes,
        "links": links,
        "groups": wf.groups,
        "config": {},
        "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}, "frontendVersion": "1.27.10"},
        "version": 0.4,
    }


def topological(wf: Workflow) -> dict[int, int]:
    done, order = set(), {}

    def visit(node: Node) -> None:
        if node.id in done:
            return
        done.add(node.id)
        for src, _ in node.links.values():
            visit(src)
        order[node.id] = len(order)

    for node in wf.nodes:
        visit(node)
    return order


def resolve(src: Node, slot: int, infos: dict):
    """Follow bypassed nodes back to a live output of the same type (frontend bypass semantics)."""
    while src.mode == MODE_BYPASS:
        kind = infos[src.type]["output"][slot]
        match = [(name, ref) for name, ref in src.links.items() if infos[ref[0].type]["output"][ref[1]] == kind]
        if not match:
            return None
        src, slot = match[0][1]
    return src, slot


def to_api(wf: Workflow, infos: dict) -> dict:
    prompt = {}
    for node in wf.nodes:
        if node.type in FRONTEND_ONLY or node.mode == MODE_BYPASS:
            continue
        inputs = dict(node.widgets)
        for name, (src, slot) in node.links.items():  # a link replaces a widget's value
            live = resolve(src, slot, infos)
            if live is not None:
                inputs[name] = [str(live[0].id), live[1]]
        prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": node.title or node.type}}
    return prompt


# --- the workflows -----------------------------------------------------------------------------

SVD_NOTE = """## SVD: baseline vs. CIL (Analytic-Init + late start)

Left: stock SVD sampling from pure noise (KSampler). Right: the paper's fix for conditional
image leakage at inference — start at **M** (σ_M ≈ 100 for SVD, M ≈ 0.85) from the
Analytic-Init Gaussian instead of from pure noise.

* **Load Analytic Stats** is bypassed: without stats the Late Start Sampler uses the naive
  late start it names in its `info` output. Estimate stats once with *svd_stats_estimation*,
  then un-bypass it (Ctrl+B) and pick the file.
* **TimeNoise Conditioning** is bypassed: it is for SVD models **fine-tuned with TimeNoise**;
  on stock SVD it is an experiment.
"""

STATS_NOTE = """## Estimate Analytic-Init stats for SVD

Put a few hundred short videos of the kind you generate in `ComfyUI/input/cil_videos`
(mp4/webm/mov/mkv/gif). **Estimate Analytic Stats** streams one clip per video through the
VAE (progress bar; Cancel stops it) and **Save Analytic Stats** writes
`models/cil_stats/svd_1024x576_14f.safetensors`. Use the same width, height and frames as
your generations. The stats feed the Late Start Sampler right away.
"""

DC_NOTE = """## DynamiCrafter (kijai/ComfyUI-DynamiCrafterWrapper) with your own Analytic-Init stats

Needs the third-party pack **ComfyUI-DynamiCrafterWrapper**. *Analytic-Init for
DynamiCrafterWrapper* replaces *DynamiCrafter LoadInitNoise*: it turns stats of any
resolution (here the official 320x512 file, copied to `models/cil_stats`) and a start M
into the wrapper's `init_noise`, on DynamiCrafter's own ZSNR schedule.
M = 940 for the original model (paper); 1000 for CIL fine-tuned models.
"""

WAN_NOTE = """## Wan 2.1 image-to-video with CIL

Late start for a flow-matching model: the Late Start Sampler starts at t = M on Wan's
shifted schedule from the Analytic-Init Gaussian ((1−σ)·E[x0] + …), not from pure noise.
Stats for Wan must be estimated with the **Wan VAE** (16 channels) — *Estimate Analytic Stats*
with this model and VAE; the loader is bypassed until you have them.
TimeNoise (bypassed) is for TimeNoise-fine-tuned Wan models.
"""


TOY_NOTE = """## The paper on a CPU: toy I2V model, baseline vs. CIL

Runs as is, no downloads: the pack's **toy image-to-video model** (trained by `cil toy-train` on
procedural 32x32 sprite videos, 8 frames) in ComfyUI's own samplers, in seconds on a CPU.

Left to right in the saved WebP: the start image, **KSampler from pure noise** (the baseline),
and the **Late Start Sampler** starting at M = 0.7 from the Analytic-Init Gaussian with the toy
world's stats (paper Sec. 4.1).

* `example.png` is far from the toy's training videos: expect abstract results. For
  in-distribution start frames use **Toy World Video** (category CIL/toy) instead of Load Image.
* The toy has no unconditional mode: keep cfg at 1.
* `edm_timenoise` is the same model fine-tuned with TimeNoise (paper Sec. 4.2); sample it the
  same way (no TimeNoise node at inference).
"""


def svd_loader_block(wf: Workflow, x: float, y: float):
    ckpt = wf.add("ImageOnlyCheckpointLoader", (x, y), (330, 100), ckpt_name="svd.safetensors")
    image = wf.add("LoadImage", (x, y + 150), (330, 320), image="example.png")
    return ckpt, image


def build_svd_baseline_vs_cil() -> Workflow:
    wf = Workflow("svd_baseline_vs_cil")
    wf.note((-360, 40), (330, 380), SVD_NOTE)
    ckpt, image = svd_loader_block(wf, 20, 60)
    cond = wf.add("SVD_img2vid_Conditioning", (380, 60), (320, 220), links={"clip_vision": ckpt.out(1), "init_image": image.out(0), "vae": ckpt.out(2)},
                  width=1024, height=576, video_frames=14, motion_bucket_id=127, fps=6, augmentation_level=0.0)
    guided = wf.add("VideoLinearCFGGuidance", (380, 330), (320, 60), links={"model": ckpt.out(0)}, min_cfg=1.0)
    base = wf.add("KSampler", (760, 60), (320, 270), title="Baseline: KSampler from pure noise", controls={"seed": "fixed"},
                  links={"model": guided.out(0), "positive": cond.out(0), "negative": cond.out(1), "latent_image": cond.out(2)},
                  seed=42, steps=25, cfg=2.5, sampler_name="euler", scheduler="karras", denoise=1.0)
    base_dec = wf.add("VAEDecode", (1120, 60), (210, 50), links={"samples": base.out(0), "vae": ckpt.out(2)})
    base_vid = wf.add("CreateVideo", (1120, 150), (270, 80), links={"images": base_dec.out(0)}, fps=6.0)
    wf.add("SaveVideo", (1420, 60), (380, 380), links={"video": base_vid.out(0)}, filename_prefix="video/svd_baseline", format="auto", codec="auto")
    stats = wf.add("CIL_LoadAnalyticStats", (380, 560), (320, 80), node_mode=MODE_BYPASS, stats_name="svd_1024x576_14f.safetensors")
    timenoise = wf.add("CIL_TimeNoiseConditioning", (380, 690), (320, 270), node_mode=MODE_BYPASS, controls={"seed": "fixed"},
                       links={"model": guided.out(0)}, beta_m=15.0, a=5.0, s=1.0, mode="sampled", quantile=0.5, seed=0,
                       noise_shape="per_element", noise_clip_tokens=False)
    cil = wf.add("CIL_LateStartSampler", (760, 560), (320, 380), title="CIL: late start + Analytic-Init", controls={"seed": "fixed"},
                 links={"model": timenoise.out(0), "positive": cond.out(0), "negative": cond.out(1), "latent_image": cond.out(2), "stats": stats.out(0)},
                 seed=42, steps=25, cfg=2.5, sampler_name="euler", scheduler="cil_late_start", M=0.85, naive_mode="paper", fit="strict", boundary=0.9)
    cil_dec = wf.add("VAEDecode", (1120, 560), (210, 50), links={"samples": cil.out(0), "vae": ckpt.out(2)})
    cil_vid = wf.add("CreateVideo", (1120, 650), (270, 80), links={"images": cil_dec.out(0)}, fps=6.0)
    wf.add("SaveVideo", (1420, 560), (380, 380), links={"video": cil_vid.out(0)}, filename_prefix="video/svd_cil", format="auto", codec="auto")
    wf.add("PreviewAny", (1120, 780), (270, 170), title="What the CIL sampler did", links={"source": cil.out(1)})
    wf.group("Load SVD and the start image", 0, -10, 720, 500)
    wf.group("Baseline", 740, -10, 1080, 470)
    wf.group("CIL: Analytic-Init late start", 360, 490, 1460, 490, color="#8A8")
    return wf


def build_svd_stats_estimation() -> Workflow:
    wf = Workflow("svd_stats_estimation")
    wf.note((-360, 40), (330, 330), STATS_NOTE)
    ckpt, image = svd_loader_block(wf, 20, 60)
    est = wf.add("CIL_EstimateAnalyticStats", (380, 60), (340, 300), links={"model": ckpt.out(0), "vae": ckpt.out(2)},
                 frames=14, width=1024, height=576, folder="cil_videos", frame_stride=2, max_videos=0)
    wf.add("CIL_SaveAnalyticStats", (760, 60), (320, 110), links={"stats": est.out(0)}, filename="svd_1024x576_14f", overwrite=False)
    wf.add("PreviewAny", (760, 210), (320, 150), title="Estimate report", links={"source": est.out(1)})
    cond = wf.add("SVD_img2vid_Conditioning", (380, 420), (320, 220), links={"clip_vision": ckpt.out(1), "init_image": image.out(0), "vae": ckpt.out(2)},
                  width=1024, height=576, video_frames=14, motion_bucket_id=127, fps=6, augmentation_level=0.0)
    guided = wf.add("VideoLinearCFGGuidance", (380, 690), (320, 60), links={"model": ckpt.out(0)}, min_cfg=1.0)
    cil = wf.add("CIL_LateStartSampler", (760, 420), (320, 380), title="CIL: late start + Analytic-Init", controls={"seed": "fixed"},
                 links={"model": guided.out(0), "positive": cond.out(0), "negative": cond.out(1), "latent_image": cond.out(2), "stats": est.out(0)},
                 seed=7, steps=25, cfg=2.5, sampler_name="euler", scheduler="cil_late_start", M=0.85, naive_mode="paper", fit="strict", boundary=0.9)
    dec = wf.add("VAEDecode", (1120, 420), (210, 50), links={"samples": cil.out(0), "vae": ckpt.out(2)})
    vid = wf.add("CreateVideo", (1120, 510), (270, 80), links={"images": dec.out(0)}, fps=6.0)
    wf.add("SaveVideo", (1420, 420), (380, 380), links={"video": vid.out(0)}, filename_prefix="video/svd_cil_own_stats", format="auto", codec="auto")
    wf.group("1. Estimate stats from a folder of videos", 360, -10, 740, 390, color="#8A8")
    wf.group("2. Sample with them", 360, 380, 1460, 440)
    return wf


def build_dynamicrafter() -> Workflow:
    wf = Workflow("dynamicrafter_wrapper_cil")
    wf.note((-360, 40), (330, 330), DC_NOTE)
    model = wf.add("DownloadAndLoadDynamiCrafterModel", (20, 60), (330, 110), model="dynamicrafter_512_fp16_pruned.safetensors", dtype="auto", fp8_unet=False)
    clip = wf.add("DownloadAndLoadCLIPModel", (20, 220), (330, 60), model="stable-diffusion-2-1-clip-fp16.safetensors")
    clip_vision = wf.add("DownloadAndLoadCLIPVisionModel", (20, 330), (330, 60), model="CLIP-ViT-H-fp16.safetensors")
    image = wf.add("LoadImage", (20, 440), (330, 320), image="example.png")
    scaled = wf.add("ImageScale", (380, 440), (320, 130), links={"image": image.out(0)}, upscale_method="lanczos", width=512, height=320, crop="center")
    pos = wf.add("CLIPTextEncode", (380, 60), (320, 120), title="Prompt", color="#232", bgcolor="#353", links={"clip": clip.out(0)}, text="a boat sailing on a calm lake, gentle waves")
    neg = wf.add("CLIPTextEncode", (380, 230), (320, 120), title="Negative prompt", color="#322", bgcolor="#533", links={"clip": clip.out(0)}, text="")
    stats = wf.add("CIL_LoadAnalyticStats", (380, 620), (320, 80), stats_name="dynamicrafter_320x512.safetensors")
    init = wf.add("CIL_DynamiCrafterInitNoise", (740, 620), (340, 230), links={"stats": stats.out(0)},
                  M=940, analytic_init=True, frames=16, width=512, height=320, fit="strict")
    i2v = wf.add("DynamiCrafterI2V", (1120, 60), (330, 470), controls={"seed": "fixed"},
                 links={"model": model.out(0), "clip_vision": clip_vision.out(0), "positive": pos.out(0), "negative": neg.out(0),
                        "image": scaled.out(0), "init_noise": init.out(0)},
                 steps=50, cfg=7.5, eta=1.0, frames=16, seed=123, fs=24, keep_model_loaded=True, vae_dtype="auto",
                 frame_window_size=16, frame_window_stride=4, augmentation_level=0.0)
    vid = wf.add("CreateVideo", (1490, 60), (270, 80), links={"images": i2v.out(0)}, fps=8.0)
    wf.add("SaveVideo", (1490, 180), (380, 380), links={"video": vid.out(0)}, filename_prefix="video/dynamicrafter_cil", format="auto", codec="auto")
    wf.add("PreviewAny", (740, 880), (340, 150), title="init_noise report", links={"source": init.out(3)})
    wf.group("DynamiCrafterWrapper (third-party pack)", 0, -10, 1470, 800)
    wf.group("CIL: your stats → init_noise", 360, 580, 740, 290, color="#8A8")
    return wf


def build_wan() -> Workflow:
    wf = Workflow("wan_i2v_cil")
    wf.note((-360, 40), (330, 330), WAN_NOTE)
    unet = wf.add("UNETLoader", (20, 60), (330, 90), unet_name="wan2.1_i2v_480p_14B_fp16.safetensors", weight_dtype="default")
    clip = wf.add("CLIPLoader", (20, 190), (330, 110), clip_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan", device="default")
    vae = wf.add("VAELoader", (20, 340), (330, 60), vae_name="wan_2.1_vae.safetensors")
    clip_vision = wf.add("CLIPVisionLoader", (20, 440), (330, 60), clip_name="clip_vision_h.safetensors")
    image = wf.add("LoadImage", (20, 540), (330, 320), image="example.png")
    pos = wf.add("CLIPTextEncode", (380, 60), (330, 120), title="Prompt", color="#232", bgcolor="#353", links={"clip": clip.out(0)},
                 text="a red fox runs through fresh snow, the camera follows it")
    neg = wf.add("CLIPTextEncode", (380, 230), (330, 120), title="Negative prompt", color="#322", bgcolor="#533", links={"clip": clip.out(0)},
                 text="static, still frame, blurry, low quality")
    encoded = wf.add("CLIPVisionEncode", (380, 400), (330, 80), links={"clip_vision": clip_vision.out(0), "image": image.out(0)}, crop="none")
    i2v = wf.add("WanImageToVideo", (380, 530), (330, 230),
                 links={"positive": pos.out(0), "negative": neg.out(0), "vae": vae.out(0), "clip_vision_output": encoded.out(0), "start_image": image.out(0)},
                 width=832, height=480, length=33, batch_size=1)
    timenoise = wf.add("CIL_TimeNoiseConditioning", (760, 60), (320, 270), node_mode=MODE_BYPASS, controls={"seed": "fixed"},
                       links={"model": unet.out(0)}, beta_m=2.0, a=5.0, s=1.0, mode="sampled", quantile=0.5, seed=0,
                       noise_shape="per_element", noise_clip_tokens=False)
    stats = wf.add("CIL_LoadAnalyticStats", (760, 380), (320, 80), node_mode=MODE_BYPASS, stats_name="wan21_832x480_33f.safetensors")
    cil = wf.add("CIL_LateStartSampler", (1120, 60), (320, 380), title="CIL: late start + Analytic-Init", controls={"seed": "fixed"},
                 links={"model": timenoise.out(0), "positive": i2v.out(0), "negative": i2v.out(1), "latent_image": i2v.out(2), "stats": stats.out(0)},
                 seed=2024, steps=30, cfg=5.0, sampler_name="euler", scheduler="cil_late_start", M=0.9, naive_mode="paper", fit="strict", boundary=0.9)
    dec = wf.add("VAEDecode", (1480, 60), (210, 50), links={"samples": cil.out(0), "vae": vae.out(0)})
    vid = wf.add("CreateVideo", (1480, 150), (270, 80), links={"images": dec.out(0)}, fps=16.0)
    wf.add("SaveVideo", (1480, 270), (400, 400), links={"video": vid.out(0)}, filename_prefix="video/wan_i2v_cil", format="auto", codec="auto")
    wf.add("PreviewAny", (1120, 490), (320, 170), title="What the CIL sampler did", links={"source": cil.out(1)})
    wf.group("Wan 2.1 I2V (ComfyUI core)", 0, -10, 730, 890)
    wf.group("CIL", 740, -10, 1160, 700, color="#8A8")
    return wf


def toy_comparison_block(wf: Workflow, x: float, loader: Node, cond: Node, first: Node, cil: Node, titles: tuple[str, str], prefix: str) -> None:
    """KSampler from pure noise + the given CIL sampler, decoded and stitched first | baseline | CIL,
    saved as an animated WebP (the toy workflows' right half)."""
    base = wf.add("KSampler", (x, 60), (320, 270), title="Baseline: KSampler from pure noise", controls={"seed": "fixed"},
                  links={"model": loader.out(0), "positive": cond.out(0), "negative": cond.out(1), "latent_image": cond.out(2)},
                  seed=42, steps=20, cfg=1.0, sampler_name="euler", scheduler="karras", denoise=1.0)
    base_dec = wf.add("VAEDecode", (x + 360, 60), (210, 50), links={"samples": base.out(0), "vae": loader.out(1)})
    cil_dec = wf.add("VAEDecode", (x + 360, 380), (210, 50), links={"samples": cil.out(0), "vae": loader.out(1)})
    left = wf.add("ImageStitch", (x + 360, 150), (270, 150), title=titles[0], links={"image1": first.out(0), "image2": base_dec.out(0)},
                  direction="right", match_image_size=False, spacing_width=2, spacing_color="white")
    both = wf.add("ImageStitch", (x + 360, 470), (270, 150), title=titles[1], links={"image1": left.out(0), "image2": cil_dec.out(0)},
                  direction="right", match_image_size=False, spacing_width=2, spacing_color="white")
    big = wf.add("ImageScaleBy", (x + 360, 670), (270, 80), links={"image": both.out(0)}, upscale_method="nearest-exact", scale_by=4.0)
    wf.add("SaveAnimatedWEBP", (x + 670, 60), (420, 420), links={"images": big.out(0)},
           filename_prefix=prefix, fps=4.0, lossless=True, quality=90, method="default")
    wf.add("PreviewAny", (x + 670, 520), (420, 160), title="What the CIL sampler did", links={"source": cil.out(1)})


def build_toy_cil_demo() -> Workflow:
    wf = Workflow("toy_cil_demo")
    wf.note((-380, 40), (350, 520), TOY_NOTE)
    loader = wf.add("CIL_ToyModelLoader", (20, 60), (330, 130), model_name="edm_baseline")
    image = wf.add("LoadImage", (20, 240), (330, 320), image="example.png")
    small = wf.add("ImageScale", (380, 240), (300, 130), title="Start image at the toy size", links={"image": image.out(0)},
                   upscale_method="area", width=32, height=32, crop="center")
    cond = wf.add("CIL_ToyImageToVideo", (380, 420), (300, 260), controls={"noise_seed": "fixed"},
                  links={"vae": loader.out(1), "start_image": small.out(0)},
                  width=32, height=32, frames=8, batch_size=1, crop="center", noise_level=0.0, noise_seed=0)
    cil = wf.add("CIL_LateStartSampler", (720, 380), (320, 380), title="CIL: late start + Analytic-Init", controls={"seed": "fixed"},
                 links={"model": loader.out(0), "positive": cond.out(0), "negative": cond.out(1), "latent_image": cond.out(2), "stats": loader.out(2)},
                 seed=42, steps=20, cfg=1.0, sampler_name="euler", scheduler="cil_late_start", M=0.7, naive_mode="paper", fit="strict", boundary=0.9)
    toy_comparison_block(wf, 720, loader, cond, small, cil, ("start | baseline", "start | baseline | CIL"), "toy_cil_demo")
    wf.add("PreviewAny", (20, 610), (330, 200), title="Toy model", links={"source": loader.out(3)})
    wf.group("Toy I2V model and start image", 0, -10, 700, 840)
    wf.group("Baseline vs. CIL", 700, -10, 1130, 840, color="#8A8")
    return wf


PROBE_NOTE = """## Leakage Probe on the toy model: measure, then start at the recommended M

Runs as is, no downloads. **Toy World Video** gives a real (held-out) toy video; the
**Leakage Probe** noises it to each t on the grid, lets the model predict the clean video in one
step and plots motion(prediction) / motion(video) against t. A leaking model's ratio collapses at
large t (the prediction is a still copy of the start image).

* The probe's **recommended_M** (plateau rule: the lower edge of the large-t plateau, where the
  model copies) is wired into the **Late Start Sampler**'s M; the baseline samples from T.
* Probe your own model the same way: a real video of the kind you generate, its first frame
  through your I2V conditioning node, and the same model patches and cfg as your sampler.
* Table and plot are also saved under `output/cil_probe/` (JSON, CSV, PNG).
"""


def build_toy_leakage_probe() -> Workflow:
    wf = Workflow("toy_leakage_probe")
    wf.note((-400, 40), (370, 560), PROBE_NOTE)
    loader = wf.add("CIL_ToyModelLoader", (20, 60), (330, 130), model_name="edm_baseline")
    video = wf.add("CIL_ToyWorldVideo", (20, 240), (330, 110), title="Reference video (held out)", model_name="edm_baseline", index=3)
    cond = wf.add("CIL_ToyImageToVideo", (20, 400), (330, 260), controls={"noise_seed": "fixed"},
                  links={"vae": loader.out(1), "start_image": video.out(1)},
                  width=32, height=32, frames=8, batch_size=1, crop="center", noise_level=0.0, noise_seed=0)
    probe = wf.add("CIL_LeakageProbe", (390, 60), (340, 560), controls={"seed": "fixed"},
                   links={"model": loader.out(0), "positive": cond.out(0), "negative": cond.out(1), "video_frames": video.out(0), "vae": loader.out(1)},
                   grid_count=10, t_min=0.1, t_max=1.0, samples_per_t=4, seed=0, cfg=1.0, start_rule="plateau", threshold=0.5,
                   plateau_tolerance=0.1, max_batch=8, preview_t="auto", pixel_metric="auto", filename_prefix="cil_probe/toy_edm_baseline")
    wf.add("PreviewImage", (770, 60), (520, 380), title="Probe plot", links={"images": probe.out(0)})
    wf.add("PreviewAny", (770, 480), (520, 280), title="Probe table", links={"source": probe.out(1)})
    cil = wf.add("CIL_LateStartSampler", (1330, 380), (320, 380), title="CIL: start at the probe's M", controls={"seed": "fixed"},
                 links={"model": loader.out(0), "positive": cond.out(0), "negative": cond.out(1), "latent_image": cond.out(2),
                        "stats": loader.out(2), "M": probe.out(2)},
                 seed=42, steps=20, cfg=1.0, sampler_name="euler", scheduler="cil_late_start", M=0.8, naive_mode="paper", fit="strict", boundary=0.9)
    toy_comparison_block(wf, 1330, loader, cond, video, cil, ("real | baseline", "real | baseline | CIL"), "toy_leakage_probe")
    wf.group("Toy model and a real video", 0, -10, 370, 700)
    wf.group("Leakage Probe", 370, -10, 940, 800, color="#A88")
    wf.group("Baseline vs. CIL at the probe's M", 1310, -10, 1130, 800, color="#8A8")
    return wf


BUILDERS = (build_svd_baseline_vs_cil, build_svd_stats_estimation, build_dynamicrafter, build_wan, build_toy_cil_demo, build_toy_leakage_probe)


def main() -> int:
    nodes = boot_comfyui()
    for build in BUILDERS:
        wf = build()
        missing = sorted({n.type for n in wf.nodes if n.type not in FRONTEND_ONLY and n.type not in nodes.NODE_CLASS_MAPPINGS})
        if missing:
            print(f"skip {wf.name}: node types not in this host: {missing}")
            continue
        infos = {t: object_info(nodes, t) for t in {n.type for n in wf.nodes} if t not in FRONTEND_ONLY}
        (OUT / "api").mkdir(parents=True, exist_ok=True)
        (OUT / f"{wf.name}.json").write_text(json.dumps(to_ui(wf, infos), indent=2, ensure_ascii=False) + "\n")
        (OUT / "api" / f"{wf.name}.json").write_text(json.dumps(to_api(wf, infos), indent=2, ensure_ascii=False) + "\n")
        print(f"wrote workflows/{wf.name}.json and workflows/api/{wf.name}.json ({len(wf.nodes)} nodes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
