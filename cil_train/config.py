"""Training configuration: nested dataclasses read from TOML or JSON with strict key checks.

A config file has the sections ``[model]``, ``[data]``, ``[loss]``, ``[lora]``, ``[optim]``,
``[run]`` and ``[svd]``; every key is optional. Relative paths are resolved against the
folder of the config file. Unknown keys are errors (a typo must not silently fall back to a
default). See ``train_configs/train_svd_lora.toml``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from cil_core.validation import CILValueError
from cil_core.timenoise import TimeNoiseConfig

MODES = ("lora", "full")
PRECISIONS = ("fp32", "bf16", "fp16")
FAMILIES = ("auto", "svd", "dynamicrafter", "wan", "edm", "vp", "flow")
CLIP_STARTS = ("random", "first", "center")
EXPORT_WEIGHTS = ("ema", "raw")
PARALLEL = ("ddp", "fsdp")

# Official TimeNoise β_m per family (survey G.1); Wan has no official value (see README).
DEFAULT_BETA_M = {"svd": 15.0, "edm": 15.0, "dynamicrafter": 100.0, "vp": 100.0, "wan": 100.0, "flow": 100.0}
DEFAULT_TARGETS = (
    "*.to_q", "*.to_k", "*.to_v", "*.to_out.0",  # UNet attention (SVD, DynamiCrafter)
    "*attn.q", "*attn.k", "*attn.v", "*attn.o",  # Wan attention
    "*blocks.*.film",  # the toy I2V model's (t, β) modulation (its attention's projections are not hookable Linears)
)


@dataclass
class ModelSection:
    kind: str = "comfy"  # "comfy": any checkpoint ComfyUI loads; "tiny": built-in test model
    checkpoint: str = ""  # full checkpoint (UNet + VAE + CLIP vision), as ImageOnlyCheckpointLoader
    unet: str = ""  # diffusion-model-only file (as UNETLoader); then give vae/clip_vision too
    vae: str = ""
    clip_vision: str = ""
    text_encoder: list[str] = field(default_factory=list)
    text_encoder_type: str = "wan"
    family: str = "auto"
    comfyui_path: str = ""  # else $COMFYUI_PATH, else an importable ComfyUI
    device: str = "auto"  # auto | cpu | cuda
    weight_dtype: str = "fp32"  # frozen weights in LoRA mode; full fine-tunes keep fp32 masters
    # built-in tiny model (kind = "tiny")
    tiny_width: int = 16
    tiny_depth: int = 2
    tiny_downsample: int = 4


@dataclass
class DataSection:
    source: str = ""  # video folder, WebVid-style CSV or folder of latent .safetensors
    kind: str = "auto"  # auto | folder | csv | latents
    video_root: str = ""  # CSV: folder the video paths are relative to (default: the CSV's folder)
    csv_video_column: str = ""  # default: path | video | videoid (WebVid: <page_dir>/<videoid>.mp4)
    csv_caption_column: str = ""  # default: caption | name | text
    frames: int = 14
    fps: float = 0.0  # resample to this frame rate first (0: the video's own rate)
    stride: int = 1  # then take every stride-th frame
    height: int = 320
    width: int = 512
    clip_start: str = "random"
    workers: int = 2  # decoder processes (0: decode in the training process)
    latent_cache: str = ""  # folder for cached VAE latents (needs clip_start first|center)
    batch_size: int = 1
    caption: str = ""  # caption for every clip when the source has none


@dataclass
class LossSection:
    timenoise: bool = True  # False: baseline loss (ablation)
    beta_m: float = 0.0  # 0: the family's official value (SVD 15, DynamiCrafter 100)
    a: float = 5.0
    s: float = 1.0
    per_sample_scalar: str = "auto"  # auto (SVD: one ε per clip, as the official code) | true | false
    noise_tokens: bool = True
    p_mean: float = -1.2
    p_std: float = 1.2
    cond_dropout: float = 0.1  # official SVD: 10 % of items get a zero image and zero CLIP


@dataclass
class LoraSection:
    rank: int = 16
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    save_dtype: str = "fp32"


@dataclass
class OptimSection:
    lr: float = 3e-5
    weight_decay: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    grad_accum: int = 1
    max_grad_norm: float = 0.0  # 0: no clipping (official DynamiCrafter: 0.5)
    warmup_steps: int = 0
    ema_decay: float = 0.0  # 0: no EMA (official SVD: 0.9999)


@dataclass
class RunSection:
    steps: int = 1000
    seed: int = 0
    output_dir: str = "cil-train-out"
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    precision: str = "fp32"
    grad_checkpointing: bool = False
    export_weights: str = "ema"  # ema (when ema_decay > 0) | raw
    progress: bool = True
    parallel: str = "ddp"  # several processes (torchrun): ddp (LoRA or full) | fsdp (full: shard weights + AdamW)
    dist_timeout: float = 600.0  # seconds a collective waits for the other processes before the job fails


@dataclass
class SVDSection:
    fps: int = 6  # as the SVD_img2vid_Conditioning widget (the embedding reads fps − 1)
    motion_bucket_id: int = 127


@dataclass
class TrainConfig:
    mode: str = "lora"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    lora: LoraSection = field(default_factory=LoraSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)
    svd: SVDSection = field(default_factory=SVDSection)

    def validate(self) -> "TrainConfig":
        _choice("mode", self.mode, MODES)
        _choice("model.family", self.model.family, FAMILIES)
        _choice("model.kind", self.model.kind, ("comfy", "tiny"))
        _choice("model.device", self.model.device, ("auto", "cpu", "cuda"))
        _choice("model.weight_dtype", self.model.weight_dtype, PRECISIONS)
        _choice("data.kind", self.data.kind, ("auto", "folder", "csv", "latents"))
        _choice("data.clip_start", self.data.clip_start, CLIP_STARTS)
        _choice("loss.per_sample_scalar", str(self.loss.per_sample_scalar).lower(), ("auto", "true", "false"))
        _choice("run.precision", self.run.precision, PRECISIONS)
        _choice("run.export_weights", self.run.export_weights, EXPORT_WEIGHTS)
        _choice("run.parallel", self.run.parallel, PARALLEL)
        _choice("lora.save_dtype", self.lora.save_dtype, PRECISIONS)
        for name, value in (
            ("data.frames", self.data.frames), ("data.stride", self.data.stride), ("data.height", self.data.height),
            ("data.width", self.data.width), ("data.batch_size", self.data.batch_size), ("lora.rank", self.lora.rank),
            ("optim.grad_accum", self.optim.grad_accum), ("run.steps", self.run.steps),
            ("run.checkpoint_every", self.run.checkpoint_every), ("run.keep_checkpoints", self.run.keep_checkpoints),
        ):
            if int(value) < 1:
                raise CILValueError(f"{name}={value!r} must be an integer >= 1.")
        if not self.run.dist_timeout > 0:
            raise CILValueError(f"run.dist_timeout={self.run.dist_timeout!r} must be > 0 seconds.")
        if self.run.parallel == "fsdp" and self.mode != "full":
            raise CILValueError('run.parallel = "fsdp" shards full fine-tunes (mode = "full"); a LoRA run keeps the frozen '
                                'weights whole on every GPU: use run.parallel = "ddp".')
        if self.data.workers < 0 or self.data.fps < 0 or self.optim.warmup_steps < 0:
            raise CILValueError("data.workers, data.fps and optim.warmup_steps must be >= 0.")
        if not 0.0 <= self.optim.ema_decay < 1.0:
            raise CILValueError(f"optim.ema_decay={self.optim.ema_decay!r} must lie in [0, 1) (0 turns EMA off; official SVD 0.9999).")
        if not 0.0 <= self.loss.cond_dropout < 1.0:
            raise CILValueError(f"loss.cond_dropout={self.loss.cond_dropout!r} must lie in [0, 1).")
        if self.optim.lr <= 0 or self.optim.weight_decay < 0 or self.lora.alpha <= 0:
            raise CILValueError("optim.lr and lora.alpha must be > 0 and optim.weight_decay >= 0.")
        if self.data.latent_cache and self.data.clip_start == "random":
            raise CILValueError(
                "data.latent_cache needs a fixed clip per video: set data.clip_start = \"first\" or \"center\" "
                "(a random start would rarely hit the cache)."
            )
        if self.mode == "lora" and not self.lora.targets:
            raise CILValueError("lora.targets is empty; give module name patterns such as \"*.to_q\".")
        if self.mode == "full" and self.model.weight_dtype != "fp32":
            raise CILValueError(
                f"model.weight_dtype={self.model.weight_dtype!r} with mode=\"full\": full fine-tunes keep fp32 "
                "master weights; use run.precision = \"bf16\" for bf16 compute."
            )
        if self.loss.timenoise:
            self.timenoise_config("svd")  # validates a, s, beta_m
        return self

    # --- derived values -------------------------------------------------------------------
    def timenoise_config(self, family_name: str) -> TimeNoiseConfig | None:
        if not self.loss.timenoise:
            return None
        beta_m = self.loss.beta_m or DEFAULT_BETA_M.get(family_name, 100.0)
        return TimeNoiseConfig(beta_m=beta_m, a=self.loss.a, s=self.loss.s)

    def per_sample_scalar(self, family_name: str) -> bool:
        value = str(self.loss.per_sample_scalar).lower()
        if value == "auto":
            return family_name in ("svd", "edm")
        return value == "true"

    def trajectory_hash(self) -> str:
        """Hash of every setting that changes the training trajectory (checked on --resume)."""
        d = asdict(self)
        d["run"] = {k: v for k, v in d["run"].items() if k in ("seed", "precision")}
        d["data"] = {k: v for k, v in d["data"].items() if k not in ("workers", "latent_cache")}
        d["model"] = {k: v for k, v in d["model"].items() if k not in ("comfyui_path", "device")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise CILValueError(f"{name}={value!r}; expected one of {', '.join(map(repr, allowed))}.")


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise CILValueError(f"[{where}] must be a table of keys; got {type(data).__name__}.")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise CILValueError(
                f"unknown key {key!r} in [{where}]; allowed keys: {', '.join(sorted(known))}."
            )
        default = getattr(cls(), key)
        if is_dataclass(default):
            kwargs[key] = _build(type(default), value, key)
        else:
            kwargs[key] = _coerce(f"{where}.{key}".lstrip("."), value, default)
    return cls(**kwargs)


def _coerce(name: str, value, default):
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise CILValueError(f"{name}={value!r} must be true or false.")
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(default, str) and isinstance(value, (str, bool)):
        return str(value).lower() if isinstance(value, bool) else value
    if isinstance(default, list) and isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(default, list) and isinstance(value, str):
        return [value]
    raise CILValueError(f"{name}={value!r} has the wrong type; expected {type(default).__name__} like {default!r}.")


def config_from_dict(data: dict, base_dir: str | Path | None = None) -> TrainConfig:
    cfg = _build(TrainConfig, data, "")
    if base_dir is not None:
        cfg = resolve_paths(cfg, Path(base_dir))
    return cfg.validate()


def resolve_paths(cfg: TrainConfig, base: Path) -> TrainConfig:
    def fix(p: str) -> str:
        return str((base / p).resolve()) if p and not Path(p).expanduser().is_absolute() else str(Path(p).expanduser()) if p else p

    model = replace(cfg.model, checkpoint=fix(cfg.model.checkpoint), unet=fix(cfg.model.unet), vae=fix(cfg.model.vae),
                    clip_vision=fix(cfg.model.clip_vision), text_encoder=[fix(p) for p in cfg.model.text_encoder],
                    comfyui_path=fix(cfg.model.comfyui_path))
    data = replace(cfg.data, source=fix(cfg.data.source), video_root=fix(cfg.data.video_root), latent_cache=fix(cfg.data.latent_cache))
    run = replace(cfg.run, output_dir=fix(cfg.run.output_dir))
    return replace(cfg, model=model, data=data, run=run)


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML (``.toml``) or JSON (``.json``) training config."""
    path = Path(path)
    if not path.is_file():
        raise CILValueError(f"config file {str(path)!r} does not exist; pass --config with a .toml or .json file.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CILValueError(f"{path.name}: invalid JSON ({exc}).") from None
    elif path.suffix.lower() == ".toml":
        data = _parse_toml(text, path.name)
    else:
        raise CILValueError(f"{path.name}: unknown config type {path.suffix!r}; use .toml or .json.")
    return config_from_dict(data, path.parent)


def _parse_toml(text: str, name: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise CILValueError(f"{name}: reading TOML on Python 3.10 needs 'pip install tomli' (or use a .json config).") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CILValueError(f"{name}: invalid TOML ({exc}).") from None
