"""``cil`` for a process that torchrun starts in a host test: boots ComfyUI, puts the tiny SVD's
template in front of ComfyUI's detection table (the tiny layout is not detected otherwise; see
test_train_svd.tiny_svd_detectable) and runs ``cil`` with this script's arguments.

    torchrun --nproc_per_node 2 tests/host/tiny_svd_cli.py train --config cfg.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # the repo, after ComfyUI's root (boot orders it)

from cil_comfy.host import boot  # noqa: E402

boot(device="cpu")

from cil_tools import cli  # noqa: E402
from test_train_svd import tiny_svd_detectable  # noqa: E402  (this folder is sys.path[0])

with tiny_svd_detectable():
    code = cli.main(sys.argv[1:])
sys.exit(code)
