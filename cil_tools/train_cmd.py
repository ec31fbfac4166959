"""``cil train``: TimeNoise fine-tuning through ComfyUI's model code (--config FILE)."""

from ._pending import not_available

HELP = "TimeNoise fine-tuning through ComfyUI's model code (--config FILE)"


def register(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help=HELP, description=HELP)
    p.set_defaults(func=not_available(name, "issue 5"))
