"""Write the pack's workflows from one description each, in both formats (UI files in workflows/,
API twins in workflows/api/, and workflows/api/manifest.json). The generator is the ``wfgen``
package beside this file (see its __init__ for the modules).

Widget order, sockets and output names come from the running host's node definitions (ComfyUI's own
/object_info data), so run it in the host venv:

    COMFYUI_PATH=/path/to/ComfyUI python workflows/tools/make_workflows.py [name ...]

The DynamiCrafter workflow needs kijai/ComfyUI-DynamiCrafterWrapper's definitions: its source is
read from CIL_DCWRAPPER_PATH (a temporary copy is loaded, nothing is installed).
"""

from __future__ import annotations

from wfgen.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
