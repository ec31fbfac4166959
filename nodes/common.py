"""What every node of the pack shares: its socket types, a line of text under a running node, and
the input checks every node runs against its own declared V3 schema.

ComfyUI checks a widget's min/max and combo options only when the node's ``validate_inputs`` does
not name that input (and not at all when it takes ``**kwargs``), never checks that a float is
finite, and never checks a value that arrives through a link (a Primitive node) or a literal
where a socket belongs (API prompts). So every node here validates with ``check_inputs`` (from
``validate_inputs``: never raises, a linked input arrives as None and is skipped) and repeats the
same checks at run time with ``require_inputs``, when linked values are known.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

from comfy_api.latest import io

from cil_core.validation import CILValueError, check_fraction, shown

# An AnalyticStats (cil_core): E[x0] [C, F, H, W] in model space and v = tr Cov/d.
Stats = io.Custom("CIL_STATS")
# kijai/ComfyUI-DynamiCrafterWrapper's init-noise dict {mu_p, sigma_p, M, analytic_init}.
DCNoise = io.Custom("DCNOISE")

WIDGET_KINDS = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
# A node's own check: values → True / a message, or raises CILValueError. A None value is a link.
Check = Callable[[Mapping], "bool | str | None"]


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
    """Node check: None (a link, checked at run time) or a fraction in (0, 1]."""
    if M is None:
        return True
    try:
        check_fraction("M", M)
    except (CILValueError, TypeError, ValueError) as exc:
        return str(exc) if isinstance(exc, CILValueError) else f"M={shown(M)} is not a number; give a fraction in (0, 1]."
    return True


# --- checks against the declared schema -------------------------------------------------------------

def _kind(inp) -> str:
    return str(inp.get_io_type())


def _type_problem(inp, value) -> str | None:
    """Is ``value`` of the input's declared type (a finite number, a clean string, …)?"""
    kind, name = _kind(inp), inp.id
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name}={shown(value)} is not a whole number; give an integer from {inp.min} to {inp.max}."
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name}={shown(value)} is not a finite number; give a number from {inp.min} to {inp.max}."
    elif kind in ("STRING", "COMBO"):
        if not isinstance(value, str):
            return f"{name}={shown(value)} is not text; give a string."
        if "\x00" in value:
            return f"{name}={shown(value)} contains a NUL character; remove it."
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{name}={shown(value)} contains a lone surrogate (invalid Unicode); retype it."
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            return f"{name}={shown(value)} is not true or false."
    return None


def _range_problem(inp, value) -> str | None:
    """Is ``value`` inside the declared min/max, or one of the combo's options?"""
    kind, name = _kind(inp), inp.id
    if kind in ("INT", "FLOAT"):
        lo, hi = getattr(inp, "min", None), getattr(inp, "max", None)
        if lo is not None and value < lo:
            return f"{name}={shown(value)} is below its minimum {lo}; give a value from {lo} to {hi}."
        if hi is not None and value > hi:
            return f"{name}={shown(value)} is above its maximum {hi}; give a value from {lo} to {hi}."
    elif kind == "COMBO":
        options = list(getattr(inp, "options", None) or [])
        if options and value not in options:
            listed = ", ".join(map(repr, options[:12])) + (f", … ({len(options)} in all)" if len(options) > 12 else "")
            return f"{name}={shown(value)} is not one of its options: {listed}."
    return None


_SOCKET_CHECKS = {  # run time: what a linked value of these socket types must look like
    "MODEL": lambda v: hasattr(v, "model") and hasattr(v, "model_options"),
    "VAE": lambda v: hasattr(v, "encode") and hasattr(v, "decode"),
    "LATENT": lambda v: isinstance(v, dict) and hasattr(v.get("samples"), "shape"),
    "IMAGE": lambda v: hasattr(v, "shape") and hasattr(v, "dim") and v.dim() == 4,
    "CONDITIONING": lambda v: isinstance(v, list),
}


def _socket_problem(inp, value, at_run_time: bool) -> str | None:
    kind, name = _kind(inp), inp.id
    if value is None:
        if at_run_time and not inp.optional:
            return f"{name} is not connected; connect a {kind} output to it."
        return None
    if not at_run_time:  # validation: a linked socket arrives as None, so this is a literal
        return (f"{name}={shown(value)} is a literal value, but {name} takes a {kind} from another node's output: connect one "
                "(in an API prompt: [node_id, output_index]).")
    ok = _SOCKET_CHECKS.get(kind)
    if ok is not None and not ok(value):
        return f"{name} received a {type(value).__name__}, not a {kind}; connect a {kind} output to it."
    return None


def _run_checks(checks, values) -> str | None:
    for check in checks:
        try:
            result = check(values)
        except CILValueError as exc:
            return str(exc)
        if result is not True and result is not None:
            return str(result)
    return None


def input_problem(node_cls, values: Mapping, checks: tuple = (), *, at_run_time: bool = False) -> str | None:
    """The first problem of ``values`` against ``node_cls``'s declared inputs, or None. Order:
    socket literals and types, then the node's own ``checks`` (their messages know the domain),
    then declared min/max and combo options. Absent inputs (ComfyUI reports missing required
    ones) and None widgets (links, at validation) are skipped."""
    inputs = node_cls.define_schema().inputs
    for inp in inputs:
        if inp.id not in values and not (at_run_time and _kind(inp) not in WIDGET_KINDS):
            continue
        value = values.get(inp.id)
        if _kind(inp) not in WIDGET_KINDS:
            problem = _socket_problem(inp, value, at_run_time)
        elif value is None:
            problem = f"{inp.id} received nothing; connect a value or type one in." if at_run_time and not inp.optional else None
        else:
            problem = _type_problem(inp, value)
        if problem:
            return problem
    problem = _run_checks(checks, values)
    if problem:
        return problem
    for inp in inputs:
        value = values.get(inp.id)
        if _kind(inp) in WIDGET_KINDS and value is not None:
            problem = _range_problem(inp, value)
            if problem:
                return problem
    return None


def check_inputs(node_cls, values: Mapping, *checks: Check) -> bool | str:
    """For ``validate_inputs(cls, **values)``: True, or the first problem as one line. Never raises."""
    try:
        return input_problem(node_cls, values, checks) or True
    except Exception as exc:  # a bug in a check must not turn into a validation traceback
        logging.exception("comfyui-cil: input check of %s failed", getattr(node_cls, "__name__", node_cls))
        return f"could not check the inputs ({type(exc).__name__}: {exc}); please report this."


def require_inputs(node_cls, values: Mapping, *checks: Check) -> None:
    """At the start of ``execute``: the same checks on every value, linked ones included; raises
    CILValueError with the first problem."""
    values = {k: v for k, v in values.items() if k != "cls"}
    problem = input_problem(node_cls, values, checks, at_run_time=True)
    if problem:
        raise CILValueError(problem)
