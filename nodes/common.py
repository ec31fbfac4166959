"""What every node of the pack shares: its socket types, a line of text under a running node, and
the validation helpers a ``validate_inputs`` uses."""

from __future__ import annotations

import logging

from comfy_api.latest import io

from cil_core.validation import CILValueError, check_fraction

# An AnalyticStats (cil_core): E[x0] [C, F, H, W] in model space and v = tr Cov/d.
Stats = io.Custom("CIL_STATS")
# kijai/ComfyUI-DynamiCrafterWrapper's init-noise dict {mu_p, sigma_p, M, analytic_init}.
DCNoise = io.Custom("DCNOISE")


def show_text(node_cls, text: str) -> None:
    """Log ``text`` and show it under the running node in the UI (progress text), when a server runs."""
    logging.info("comfyui-cil: %s", text)
    node_id = getattr(getattr(node_cls, "hidden", None), "unique_id", None)
    try:
        from server import PromptServer

        server = getattr(PromptServer, "instance", None)
        if server is not None and node_id is not None:
            server.send_progress_text(text, node_id)
    except Exception:  # no server (headless, tests) or an old server without progress text
        pass


def validate_m(M) -> bool | str:
    """validate_inputs helper: None (a link, checked at run time) or a fraction in (0, 1]."""
    if M is None:
        return True
    try:
        check_fraction("M", M)
    except CILValueError as exc:
        return str(exc)
    return True
