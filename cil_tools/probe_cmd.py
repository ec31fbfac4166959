"""``cil probe``: measure conditional image leakage of a model on a video (Leakage Probe)."""

from ._pending import not_available

HELP = "measure conditional image leakage of a model on a video (Leakage Probe)"


def register(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help=HELP, description=HELP)
    p.set_defaults(func=not_available(name, "issue 4"))
