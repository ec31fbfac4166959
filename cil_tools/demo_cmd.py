"""``cil demo``: run the whole paper on the toy I2V world and write a report folder."""

from ._pending import not_available

HELP = "run the whole paper on the toy I2V world and write a report folder"


def register(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help=HELP, description=HELP)
    p.set_defaults(func=not_available(name, "issue 6"))
