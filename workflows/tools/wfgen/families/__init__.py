"""The workflows, one module per model family. Each module lists its workflows in ``SPECS``."""

from . import dynamicrafter, hunyuan, kandinsky, ltxv, svd, toy, wan21, wan22

FAMILIES = (svd, dynamicrafter, wan21, wan22, ltxv, hunyuan, kandinsky, toy)


def all_specs():
    return [spec for family in FAMILIES for spec in family.SPECS]
