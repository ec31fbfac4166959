"""TimeNoise training step: our loss vs a straightforward re-implementation of the official one,
with and without gradient checkpointing — same model, same batch, same optimizer.

  ours      cil_train.loop.training_loss → cil_core.losses.diffusion_loss (family
            preconditioning, TimeNoise on the condition, β as the augmentation input)
  official  EDMLossTimeNoise written out as in the official SVD code: σ = exp(P_mean + P_std·z),
            weight (σ²+1)/σ², c_skip/c_out/c_in of VScalingWithEDMcNoise, logit-normal β_s,
            one condition ε per clip

Each configuration runs in its own subprocess (so peak-RSS numbers do not mix) and reports:
  step ms      median (and fastest) wall time of forward + backward + AdamW step, after warm-up
  saved MB     bytes autograd keeps for backward in one step (exact, saved_tensors_hooks)
  peak RSS MB  rise of the process's peak resident memory (ru_maxrss) over its value once the
               model and batch are built: activations + gradients + AdamW state + allocator slack

    python benchmarks/bench_train_loss.py                  # < 1 minute on 2 CPU cores
    python benchmarks/bench_train_loss.py --width 64 --frames 14 --size 24 --steps 10

``--svd-xt-memory`` (needs ComfyUI: COMFYUI_PATH and its venv) instead ESTIMATES the memory of
training SVD-XT on one 14×576×1024 clip without a GPU: ComfyUI's own SVD-XT UNet is built on
the ``meta`` device (exact parameter count), one forward runs on meta tensors in bf16, and the
tensors autograd saves for backward are summed — with attention counted as a flash kernel keeps
it (q, k, v, out, log-sum-exp; no N×N matrix) — with and without gradient checkpointing.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_train_loss.py --svd-xt-memory
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch

CONFIGS = [("ours", False), ("official", False), ("ours", True), ("official", True)]


def build(args):
    from cil_core.families import svd_family
    from cil_train.adapters import Batch
    from cil_train.toy import TinyAdapter, TinyVideoNet, init_tiny

    torch.manual_seed(0)
    net = init_tiny(TinyVideoNet(4, args.width, args.depth), 0)
    adapter = TinyAdapter(net, svd_family(), "svd")
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(args.batch, 4, args.frames, args.size, args.size, generator=gen)
    batch = Batch(x0, {"image": x0[:, :, 0] / 0.18215})
    return adapter, batch


def official_loss(net, x0, image, generator, p_mean=-1.2, p_std=1.2, beta_m=15.0, a=5.0):
    """EDMLossTimeNoise, written the straightforward way (one ε per clip for the condition)."""
    b = x0.shape[0]
    sigma = torch.exp(torch.randn(b, 1, 1, 1, 1, generator=generator) * p_std + p_mean)
    weight = (sigma**2 + 1) / sigma**2
    n = torch.randn(x0.shape, generator=generator) * sigma
    t = (sigma / 700.0).clamp(max=1.0).reshape(b)
    beta = beta_m * torch.sigmoid(2 * t**a - 1 + torch.randn(b, generator=generator))
    cond = image + beta.reshape(b, 1, 1, 1) * torch.randn(b, 1, 1, 1, generator=generator)
    c_skip = 1 / (sigma**2 + 1)
    c_out = -sigma / (sigma**2 + 1).sqrt()
    c_in = 1 / (sigma**2 + 1).sqrt()
    t_net = (sigma.reshape(b).log() - math.log(0.002)) / (math.log(700.0) - math.log(0.002))
    D = c_skip * (x0 + n) + c_out * net(c_in * (x0 + n), cond, t_net, beta)
    return weight * (D - x0) ** 2


class SavedBytes:
    """Sum of the storage bytes autograd saves for backward (each storage counted once)."""

    def __init__(self):
        self.storages, self.total = set(), 0

    def pack(self, t):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in self.storages:
            self.storages.add(key)
            self.total += key[1]
        return t

    def __enter__(self):
        self.ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self.ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


def run_config(args, loss_name: str, checkpointing: bool) -> dict:
    from cil_core.losses import LossConfig
    from cil_core.timenoise import TimeNoiseConfig
    from cil_train import grad_ckpt
    from cil_train.loop import training_loss

    adapter, batch = build(args)
    net = adapter.net
    opt = torch.optim.AdamW(net.parameters(), lr=3e-5, weight_decay=1e-2)
    cfg = LossConfig(timenoise=TimeNoiseConfig(beta_m=15.0), per_sample_scalar=True)
    blocks = grad_ckpt.enable(net) if checkpointing else []
    gen = torch.Generator().manual_seed(2)

    def step(measure: SavedBytes | None = None):
        with measure if measure is not None else _null():
            if loss_name == "ours":
                loss = training_loss(adapter, batch, cfg, 0.0, gen)[0].mean()
            else:
                loss = official_loss(net, batch.x0, batch.cond["image"], gen).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model + batch built, nothing run
    step()  # warm-up (allocator, AdamW state)
    saved = SavedBytes()
    step(saved)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    grad_ckpt.disable(blocks)
    times.sort()
    return {"loss": loss_name, "checkpointing": checkpointing, "step_ms": 1000 * times[len(times) // 2], "min_ms": 1000 * times[0],
            "saved_mb": saved.total / 2**20, "peak_rss_mb": (rss_after - rss_before) / 1024,
            "params": sum(p.numel() for p in net.parameters())}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- SVD-XT memory estimate (meta device, no GPU) ----------------------------------------------------

SVD_XT_UNET = {  # ComfyUI's detected unet_config of svd_xt.safetensors
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 768, "in_channels": 8, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4],
    "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": 1024, "num_head_channels": 64,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "use_temporal_attention": True,
    "use_temporal_resblock": True, "extra_ff_mix_layer": True, "use_spatial_context": True,
    "merge_strategy": "learned_with_images", "merge_factor": 0.0, "video_kernel_size": [3, 1, 1],
    "disable_temporal_crossattention": False, "max_ddpm_temb_period": 10000,
}


class FlashLikeAttention(torch.autograd.Function):
    """Shape-only attention that saves what a flash kernel saves: q, k, v, out and the fp32 LSE."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, _, _ = ctx.saved_tensors
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)


class SavedOnce:
    """Bytes autograd saves, each base tensor counted once (works on meta tensors)."""

    def __init__(self):
        self.keep, self.seen, self.total = [], set(), 0

    def pack(self, t):
        base = t._base if t._base is not None else t
        if id(base) not in self.seen:
            self.seen.add(id(base))
            self.keep.append(base)
            self.total += base.numel() * base.element_size()
        return t


def svd_xt_memory(frames: int = 14, height: int = 576, width: int = 1024) -> dict:
    from cil_comfy.host import boot

    boot(device="cpu")
    import comfy.ldm.modules.attention as attention
    import comfy.ops
    import comfy.supported_models as sm

    from cil_train.lora import LoraSet, LoraSpec

    cfg = sm.SVD_img2vid(dict(SVD_XT_UNET))
    cfg.set_inference_dtype(torch.bfloat16, None)
    with torch.device("meta"):
        model = cfg.get_model({})
    unet = model.diffusion_model
    params = sum(p.numel() for p in unet.parameters())
    saved_patch = (comfy.ops.scaled_dot_product_attention, attention.optimized_attention, attention.optimized_attention_masked)
    comfy.ops.scaled_dot_product_attention = lambda q, k, v, *a, **kw: FlashLikeAttention.apply(q, k, v)
    attention.optimized_attention = attention.optimized_attention_masked = attention.attention_pytorch
    result = {"params": params}
    try:
        for mode in ("full", "lora"):
            lora = None
            unet.requires_grad_(mode == "full")
            if mode == "lora":
                lora = LoraSet(unet, LoraSpec(16, 16.0), device=torch.device("meta"))
                result["lora_params_r16"] = sum(p.numel() for p in lora.parameters().values())
            for ckpt in (False, True):
                total, largest = _saved_bytes(model, unet, frames, height // 8, width // 8, ckpt)
                result[f"{mode}_act{'_ckpt' if ckpt else ''}"] = total
                if not ckpt:
                    result[f"{mode}_largest_block"] = largest
            if lora is not None:
                lora.remove()
    finally:
        comfy.ops.scaled_dot_product_attention, attention.optimized_attention, attention.optimized_attention_masked = saved_patch
    return result


def _saved_bytes(model, unet, frames: int, h: int, w: int, checkpointing: bool) -> tuple[int, int]:
    """(bytes saved for backward by one forward, the most any single checkpoint block saves)."""
    from cil_train import grad_ckpt

    counter, per_block = SavedOnce(), []
    blocks = grad_ckpt.checkpoint_blocks(unet)
    handles = [b.register_forward_pre_hook(lambda m, a: per_block.append(-counter.total)) for b in blocks]
    handles += [b.register_forward_hook(lambda m, a, o: per_block.append(per_block.pop() + counter.total)) for b in blocks]
    wrapped = grad_ckpt.enable(unet) if checkpointing else []
    with torch.device("meta"):
        x = torch.empty(frames, 4, h, w, dtype=torch.bfloat16)
        conds = dict(c_concat=torch.empty(frames, 4, h, w, dtype=torch.bfloat16),
                     c_crossattn=torch.empty(frames, 1, 1024, dtype=torch.bfloat16),
                     y=torch.empty(frames, 768, dtype=torch.bfloat16))
    try:
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
            model.apply_model(x, torch.ones(frames, device="meta"), num_video_frames=frames, transformer_options={}, **conds)
    finally:
        grad_ckpt.disable(wrapped)
        for h_ in handles:
            h_.remove()
    return counter.total, max(per_block, default=0)


def print_svd_xt_memory(r: dict) -> None:
    gib = 2**30
    p, lp = r["params"], r["lora_params_r16"]
    print(f"SVD-XT UNet: {p:,} parameters (ComfyUI's model built on the meta device); LoRA r16 on q/k/v/out: {lp:,}")
    print("ESTIMATE for one 14x576x1024 clip (latent 14x4x72x128), bf16 compute; activations = tensors autograd saves")
    print("(meta-device accounting, attention counted like a flash kernel); with checkpointing add the largest")
    print("block's activations, recomputed during backward. Excludes allocator slack, kernel workspaces, VAE/CLIP.")
    print(f"{'mode':54s} {'weights+grads+optim':>20s} {'activations':>12s} {'total':>7s}")
    states = {"full": ("full FT, fp32 master + AdamW + EMA 0.9999", 20 * p), "full_noema": ("full FT, fp32 master + AdamW, no EMA", 16 * p),
              "lora": ("LoRA r16, bf16 frozen weights", 2 * p + 16 * lp)}
    for key, (name, nbytes) in states.items():
        mode = "lora" if key == "lora" else "full"
        for ckpt in (False, True):
            act = r[f"{mode}_act_ckpt"] + r[f"{mode}_largest_block"] if ckpt else r[f"{mode}_act"]
            label = name + (" + grad ckpt" if ckpt else "")
            print(f"{label:54s} {nbytes / gib:17.1f} GiB {act / gib:8.1f} GiB {(nbytes + act) / gib:5.1f} GiB")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=32, help="tiny model channels")
    p.add_argument("--depth", type=int, default=4, help="tiny model blocks")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=16, help="latent height = width")
    p.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 gives stable timings on a shared machine)")
    p.add_argument("--in-process", action="store_true", help="no subprocesses (peak RSS then mixes configurations)")
    p.add_argument("--svd-xt-memory", action="store_true", help="estimate SVD-XT training memory (needs ComfyUI)")
    p.add_argument("--worker", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _main(args, argv)
    finally:
        torch.set_num_threads(threads)


def _main(args, argv) -> list[dict]:
    if args.svd_xt_memory:
        estimate = svd_xt_memory()
        print_svd_xt_memory(estimate)
        return [estimate]
    if args.worker:
        name, ckpt = args.worker.split(",")
        print(json.dumps(run_config(args, name, ckpt == "1")))
        return []
    rows = []
    for name, ckpt in CONFIGS:
        if args.in_process:
            rows.append(run_config(args, name, ckpt))
        else:
            cmd = [sys.executable, __file__, "--worker", f"{name},{int(ckpt)}"] + [a for a in (argv or sys.argv[1:]) if a != "--in-process"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    shape = f"B={args.batch} C=4 F={args.frames} {args.size}x{args.size}, tiny net width {args.width} depth {args.depth} ({rows[0]['params'] / 1e6:.2f} M params)"
    print(f"TimeNoise training step, same model and batch: {shape}; CPU, {torch.get_num_threads()} threads")
    print(f"{'loss':10s} {'grad ckpt':>9s} {'step ms':>9s} {'min ms':>9s} {'saved MB':>9s} {'peak RSS MB':>12s}")
    for r in rows:
        print(f"{r['loss']:10s} {('on' if r['checkpointing'] else 'off'):>9s} {r['step_ms']:9.1f} {r['min_ms']:9.1f} "
              f"{r['saved_mb']:9.2f} {r['peak_rss_mb']:12.1f}")
    return rows


if __name__ == "__main__":
    main()
