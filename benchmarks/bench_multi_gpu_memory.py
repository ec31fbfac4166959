"""ESTIMATED memory per GPU of full TimeNoise fine-tunes on 8 GPUs, DDP vs FSDP2, for SVD-XT and
one Wan 2.2 A14B expert — without a GPU and without weights.

ComfyUI's own networks are built on the ``meta`` device from its configs (SVD-XT: the UNet config of
bench_train_loss.py; Wan 2.2 A14B: ``WanModel`` with the I2V expert's layout, dim 5120, 40 layers,
40 heads, FFN 13824, 36 input channels; each of the two experts is trained on its own), so the
parameter counts are exact. One bf16 forward runs on meta tensors with gradient checkpointing on the
trainer's blocks (``cil_train.grad_ckpt``), and the bytes autograd saves are summed (attention
counted like a flash kernel: q, k, v, out, log-sum-exp), plus the largest block's own activations,
recomputed in backward.

Per GPU, batch 1 per GPU, fp32 master weights + AdamW (the trainer's full mode), bf16 autocast:

  DDP    16·P (weights 4 + gradients 4 + AdamW moments 8 bytes per parameter) + A
  FSDP2  16·P/N + 12·P_block + 8·P_root + A
         (each GPU keeps 1/N of the 16·P; while a block runs its fp32 weights are gathered, the
         next block's are prefetched and its fp32 gradients exist before the reduce-scatter:
         3 × 4 bytes × the largest block; the parameters outside the blocks (embeddings, heads)
         stay gathered with their gradients through the step: 8·P_root)
  + EMA  +4·P (DDP) or +4·P/N (FSDP2) when optim.ema_decay > 0

A = activations with gradient checkpointing. Left out: allocator slack and fragmentation, CUDA
context (~0.5-1 GiB), kernel workspaces, NCCL buffers, autocast's bf16 weight copies, the VAE and
text/image encoders (use a latent cache). These are ESTIMATES, not measurements.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_multi_gpu_memory.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # the pack, when it is not installed in ComfyUI's venv
from bench_train_loss import SVD_XT_UNET, FlashLikeAttention, SavedOnce  # noqa: E402

GIB = 2**30
WAN22_A14B = dict(model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=36, dim=5120, ffn_dim=13824, freq_dim=256,
                  text_dim=4096, out_dim=16, num_heads=40, num_layers=40, window_size=(-1, -1), qk_norm=True,
                  cross_attn_norm=True, eps=1e-6, image_model="wan2.1")  # Wan 2.2 I2V experts: no CLIP branch


def checkpointed_activations(root: torch.nn.Module, forward) -> tuple[int, int]:
    """(bytes saved for backward by ``forward()`` with every block checkpointed, the most one block
    saves when it is recomputed)."""
    from cil_train import grad_ckpt

    blocks = grad_ckpt.checkpoint_blocks(root)
    per_block, counter, inside = [], SavedOnce(), []
    handles = [b.register_forward_pre_hook(lambda m, a: inside.append(-counter.total)) for b in blocks]
    handles += [b.register_forward_hook(lambda m, a, o: per_block.append(inside.pop() + counter.total)) for b in blocks]
    try:  # first without checkpointing: what each block would keep (its recompute cost)
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
            forward()
    finally:
        for h in handles:
            h.remove()
    wrapped = grad_ckpt.enable(root)
    saved = SavedOnce()
    try:
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
            forward()
    finally:
        grad_ckpt.disable(wrapped)
    return saved.total, max(per_block, default=0)


def patched_attention():
    import comfy.ldm.modules.attention as attention
    import comfy.ldm.wan.model as wan
    import comfy.ops

    comfy.ops.scaled_dot_product_attention = lambda q, k, v, *a, **kw: FlashLikeAttention.apply(q, k, v)
    attention.optimized_attention = attention.optimized_attention_masked = attention.attention_pytorch
    wan.optimized_attention = attention.attention_pytorch


def svd_xt(frames: int, height: int, width: int) -> dict:
    import comfy.supported_models as sm

    cfg = sm.SVD_img2vid(dict(SVD_XT_UNET))
    cfg.set_inference_dtype(torch.bfloat16, None)
    with torch.device("meta"):
        model = cfg.get_model({})
    unet = model.diffusion_model.requires_grad_(True)
    h, w = height // 8, width // 8
    with torch.device("meta"):
        x = torch.empty(frames, 4, h, w, dtype=torch.bfloat16)
        conds = dict(c_concat=torch.empty(frames, 4, h, w, dtype=torch.bfloat16),
                     c_crossattn=torch.empty(frames, 1, 1024, dtype=torch.bfloat16), y=torch.empty(frames, 768, dtype=torch.bfloat16))
    forward = lambda: model.apply_model(x, torch.ones(frames, device="meta"), num_video_frames=frames, transformer_options={}, **conds)  # noqa: E731
    return describe(f"SVD-XT, {frames}x{height}x{width}", unet, forward)


def wan22_a14b(frames: int, height: int, width: int) -> dict:
    import comfy.ldm.wan.model as wan
    import comfy.ops

    with torch.device("meta"):
        net = wan.WanModel(**WAN22_A14B, device="meta", dtype=torch.bfloat16, operations=comfy.ops.disable_weight_init)
    net.requires_grad_(True)
    t = (frames - 1) // 4 + 1
    with torch.device("meta"):
        x = torch.empty(1, 36, t, height // 8, width // 8, dtype=torch.bfloat16)
        context = torch.empty(1, 512, 4096, dtype=torch.bfloat16)
    return describe(f"Wan 2.2 A14B (one expert), {frames}x{height}x{width}", net, lambda: net(x, torch.ones(1, device="meta"), context))


def describe(name: str, root: torch.nn.Module, forward) -> dict:
    from cil_train import grad_ckpt

    blocks = grad_ckpt.checkpoint_blocks(root)
    params = sum(p.numel() for p in root.parameters())
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    act, largest = checkpointed_activations(root, forward)
    return {"name": name, "params": params, "block": max(sum(p.numel() for p in b.parameters()) for b in blocks),
            "root": sum(p.numel() for p in root.parameters() if id(p) not in in_blocks), "act": act + largest}


def per_gpu(r: dict, n: int, ema: bool) -> tuple[float, float]:
    """(DDP, FSDP2) bytes per GPU."""
    p = r["params"]
    ddp = 16 * p + (4 * p if ema else 0) + r["act"]
    fsdp = 16 * p / n + (4 * p / n if ema else 0) + 12 * r["block"] + 8 * r["root"] + r["act"]
    return ddp, fsdp


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=8)
    args = p.parse_args(argv)
    from cil_comfy.host import boot

    boot(device="cpu")
    patched_attention()
    rows = [svd_xt(14, 576, 1024), wan22_a14b(81, 480, 832), wan22_a14b(81, 720, 1280)]
    n = args.gpus
    print(f"ESTIMATES per GPU, {n} GPUs, batch 1 per GPU, fp32 master + AdamW, bf16 autocast, gradient checkpointing")
    print(f"{'model, clip':44s} {'params':>15s} {'activations':>11s} {'DDP':>9s} {'FSDP2':>9s} {'DDP+EMA':>9s} {'FSDP2+EMA':>9s}  fits 24 / 80 GiB")
    for r in rows:
        (ddp, fsdp), (ddp_e, fsdp_e) = per_gpu(r, n, False), per_gpu(r, n, True)
        fits = lambda b: f"{'yes' if b <= 24 * GIB else 'no'}/{'yes' if b <= 80 * GIB else 'no'}"  # noqa: E731
        print(f"{r['name']:44s} {r['params']:>15,d} {r['act'] / GIB:>7.1f} GiB {ddp / GIB:>5.1f} GiB {fsdp / GIB:>5.1f} GiB "
              f"{ddp_e / GIB:>5.1f} GiB {fsdp_e / GIB:>5.1f} GiB  DDP {fits(ddp)}, FSDP2 {fits(fsdp)}")
        print(f"{'':44s} largest block {r['block']:,d} params, outside blocks {r['root']:,d}")
    return rows


if __name__ == "__main__":
    main()
