"""``cil toy-train``: retrain the toy world's shipped weights from scratch."""

from ._pending import not_available

HELP = "retrain the toy world's shipped weights from scratch"


def register(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help=HELP, description=HELP)
    p.set_defaults(func=not_available(name, "issue 6"))
