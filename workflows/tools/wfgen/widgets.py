"""A node definition (/object_info entry) read the way the ComfyUI frontend reads it."""

from __future__ import annotations

from dataclasses import dataclass

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")


@dataclass(frozen=True)
class InputSpec:
    name: str
    kind: str  # INT, FLOAT, STRING, BOOLEAN, COMBO, or a socket type
    options: dict
    optional: bool
    choices: tuple = ()

    @property
    def is_widget(self) -> bool:
        return self.kind in WIDGET_TYPES and not self.options.get("forceInput")

    @property
    def slots(self) -> int:
        """How many widgets_values entries it takes: the value, plus the "control after generate"
        value of a seed (useIntWidget: control_after_generate ?? name in {seed, noise_seed}) or the
        upload widget of an image combo."""
        control = self.options.get("control_after_generate")
        if self.kind == "INT" and (control if control is not None else self.name in ("seed", "noise_seed")):
            return 2
        if self.kind in ("FLOAT", "COMBO") and control:
            return 2
        if self.kind == "COMBO" and (self.options.get("image_upload") or self.options.get("video_upload")):
            return 2
        return 1

    @property
    def upload(self) -> str | None:
        """The value of the upload widget an image/video combo adds after itself (the frontend saves
        "image" for both), or None."""
        if self.kind == "COMBO" and (self.options.get("image_upload") or self.options.get("video_upload")):
            return "image"
        return None

    @property
    def multiline(self) -> bool:
        return self.kind == "STRING" and bool(self.options.get("multiline"))


def input_specs(info: dict) -> list[InputSpec]:
    """Every input in the frontend's order: required, then optional (input_order where given)."""
    out = []
    for section in ("required", "optional"):
        spec = info["input"].get(section, {})
        for name in info.get("input_order", {}).get(section, list(spec)):
            entry = spec[name]
            combo = isinstance(entry[0], list)
            options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            choices = tuple(entry[0]) if combo else tuple(options.get("options", ()))
            out.append(InputSpec(name, "COMBO" if combo else entry[0], options, section == "optional", choices))
    return out


def output_specs(info: dict) -> list[tuple[str, str]]:
    """(name, type) of each output."""
    names = info.get("output_name") or info["output"]
    return [(names[i], kind) for i, kind in enumerate(info["output"])]
