"""Placeholder for subcommands whose implementation has not landed yet."""

from cil_core.validation import CILValueError


def not_available(command: str, issue: str):
    def run(_args) -> int:
        raise CILValueError(f"'cil {command}' is not implemented in this build yet ({issue}).")

    return run
