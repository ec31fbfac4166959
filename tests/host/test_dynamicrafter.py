"""Analytic-Init for kijai/ComfyUI-DynamiCrafterWrapper: our stats + M → its DCNOISE dict.

Checked against DynamiCrafter's schedule written out here in float64 (numpy, lvdm's recipe) and,
when the wrapper is importable, against the wrapper's own DynamiCrafterLoadInitNoise node run on
its own DDPM schedule code and its shipped official stats files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.host



def dc_alpha_bar_float64():
    """DynamiCrafter's ᾱ: LDM 'linear' betas (linspace of sqrt), zero-terminal-SNR rescale of the
    betas (Lin et al. 2024, Alg. 1 as lvdm applies it), cumprod — numpy float64."""
    import numpy as np

    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    root = np.sqrt(np.cumprod(1.0 - betas))
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])
    abar = root**2
    alphas = np.concatenate([abar[:1], abar[1:] / abar[:-1]])
    return np.cumprod(alphas)


@pytest.fixture
def official_512(stats_dir, official_stats) -> str:
    shutil.copy(official_stats("dynamicrafter_320x512.safetensors"), stats_dir / "dc512.safetensors")
    return "dc512.safetensors"


def dcnoise_prompt(stats_name: str, key: str, **widgets) -> dict:
    inputs = {"M": 940, "analytic_init": True, "frames": 0, "width": 0, "height": 0, "fit": "strict"}
    inputs.update(widgets)
    return {
        "1": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": stats_name}},
        "2": {"class_type": "CIL_DynamiCrafterInitNoise", "inputs": {"stats": ["1", 0], **inputs}},
        "3": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["2", 0], "key": key}},
        "4": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["2", 1], "key": key + "_w"}},
        "5": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["2", 2], "key": key + "_h"}},
    }


def run_dcnoise(host, captures, stats_name, **widgets) -> tuple[dict, int, int]:
    key = f"dc_{len(captures)}"
    host.run(dcnoise_prompt(stats_name, key, **widgets))
    return captures[key][-1], captures[key + "_w"][-1], captures[key + "_h"][-1]


@pytest.mark.parametrize("m", [1000, 940, 500, 1])
def test_dcnoise_follows_dynamicrafter_schedule(tiny_host, captures, official_512, stats_dir, m):
    import math

    import torch
    from safetensors.torch import load_file

    noise, width, height = run_dcnoise(tiny_host, captures, official_512, M=m)
    raw = load_file(str(stats_dir / official_512))
    e, v = raw["Expectation_X0"].double(), float(raw["Tr_Cov_d"])
    abar = float(dc_alpha_bar_float64()[m - 1])
    assert set(noise) == {"mu_p", "sigma_p", "M", "analytic_init"}
    assert type(noise["M"]) is int and noise["M"] == m and noise["analytic_init"] is True
    assert noise["mu_p"].dtype == torch.float32 and tuple(noise["mu_p"].shape) == (1, 4, 16, 40, 64)
    assert noise["sigma_p"].dtype == torch.float32 and tuple(noise["sigma_p"].shape) == (1, 1, 1, 1, 1)
    assert torch.allclose(noise["mu_p"].cpu().double(), math.sqrt(abar) * e, rtol=1e-6, atol=1e-7)
    assert float(noise["sigma_p"]) == pytest.approx(math.sqrt(1 - abar + abar * v), rel=1e-6)
    assert (width, height) == (512, 320)


def test_dcnoise_resamples_only_when_asked(tiny_host, captures, official_512):
    """Stats of 320x512 for a 256x160 video: 'strict' refuses (a clear execution error), 'resample' fits E[x0]."""
    with pytest.raises(AssertionError, match=r"do not fit.*resample"):
        run_dcnoise(tiny_host, captures, official_512, width=256, height=160)
    noise, width, height = run_dcnoise(tiny_host, captures, official_512, width=256, height=160, frames=8, fit="resample")
    assert tuple(noise["mu_p"].shape) == (1, 4, 8, 20, 32) and (width, height) == (256, 160)


def test_dcnoise_refuses_stats_of_another_channel_count(tiny_host, captures, write_stats):
    name, _ = write_stats("wan16.safetensors", (16, 4, 8, 8))
    with pytest.raises(AssertionError, match=r"16 latent channels.*4"):
        run_dcnoise(tiny_host, captures, name, M=900)


def test_dcnoise_analytic_init_off_is_passed_through(tiny_host, captures, official_512):
    noise, _, _ = run_dcnoise(tiny_host, captures, official_512, M=900, analytic_init=False)
    assert noise["analytic_init"] is False and noise["M"] == 900


@pytest.mark.parametrize("m", [1000, 940, 500])
@pytest.mark.parametrize("resolution", ["512", "1024"])
def test_dcnoise_equals_the_wrappers_own_init_noise(tiny_host, captures, stats_dir, dc_wrapper, m, resolution):
    """The real wrapper's DynamiCrafterLoadInitNoise (its own DDPM schedule code, its shipped
    official file) and our node on the same file give the same DCNOISE."""
    import torch

    ddpm3d = dc_wrapper("lvdm.models.ddpm3d")
    holder = ddpm3d.DDPM.__new__(ddpm3d.DDPM)
    type(holder).__mro__[1].__init__(holder)
    holder.rescale_betas_zero_snr, holder.parameterization, holder.v_posterior = True, "v", 0.0
    holder.register_schedule(beta_schedule="linear", timesteps=1000, linear_start=0.00085, linear_end=0.012)
    loader = tiny_host.node_classes["DynamiCrafterLoadInitNoise"]()
    theirs, their_w, their_h = loader.load({"model": holder, "model_name": f"dynamicrafter_{resolution}.safetensors"}, M=m, analytic_init=True)
    wrapper_dir = Path(ddpm3d.__file__).resolve().parents[2]
    shutil.copy(wrapper_dir / "init_noises" / f"initial_noise_{resolution}.safetensors", stats_dir / f"wrapper_{resolution}.safetensors")
    ours, our_w, our_h = run_dcnoise(tiny_host, captures, f"wrapper_{resolution}.safetensors", M=m)
    assert set(ours) == set(theirs) and ours["M"] == theirs["M"] and ours["analytic_init"] == theirs["analytic_init"]
    for key in ("mu_p", "sigma_p"):
        assert ours[key].shape == theirs[key].shape and ours[key].dtype == theirs[key].dtype
        assert ours[key].device == theirs[key].device
        assert torch.allclose(ours[key], theirs[key], rtol=2e-6, atol=1e-7), (key, float((ours[key] - theirs[key]).abs().max()))
    assert (our_w, our_h) == (their_w, their_h)
