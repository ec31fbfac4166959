"""The tiny SVD source node drives ComfyUI's own KSampler: the host fixture is sound."""

import pytest

pytestmark = pytest.mark.host


def ksampler_prompt(prefix: str, seed: int = 1, steps: int = 3) -> dict:
    return {
        "1": {"class_type": "CILTest_TinySVD", "inputs": {"seed": 0, "frames": 4, "height": 8, "width": 8}},
        "2": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0], "positive": ["1", 1], "negative": ["1", 2], "latent_image": ["1", 3],
                "seed": seed, "steps": steps, "cfg": 2.0, "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0,
            },
        },
        "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": prefix}},
    }


def test_ksampler_runs_on_tiny_svd_and_is_seed_deterministic(svd_host):
    import torch

    svd_host.run(ksampler_prompt("tiny_a", seed=3))
    a = svd_host.load_latent("tiny_a")
    svd_host.run(ksampler_prompt("tiny_b", seed=3))
    b = svd_host.load_latent("tiny_b")
    assert a.shape == (4, 4, 8, 8)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
