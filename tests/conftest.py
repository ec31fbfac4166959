"""Every tier: Hypothesis draws the same examples on every run (profile ``ci``), so a gate run is
repeatable; ``HYPOTHESIS_PROFILE=explore pytest`` draws new ones each run, for fuzzing campaigns.
``tests/support`` (``bounded_run``: the processes tests start) is put on ``sys.path``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

sys.path.append(str(Path(__file__).resolve().parent / "support"))

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)


def pytest_configure(config):
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    if profile not in ("ci", "explore"):
        raise pytest.UsageError(f"HYPOTHESIS_PROFILE={profile!r}: expected 'ci' (the same examples every run) or 'explore' (new ones).")
    settings.load_profile(profile)
