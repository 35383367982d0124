"""Run notebooks in a real Jupyter kernel of this interpreter (the venv's
python, whatever kernelspecs the machine has), with nbclient."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

KERNEL_NAME = "funcx-test-python"
REPO = Path(__file__).resolve().parent.parent


def kernel_manager(tmp: Path) -> AsyncKernelManager:
    """A kernel manager whose only kernelspec runs ``sys.executable``."""
    spec_dir = tmp / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    # this checkout's funcx and jupyter_ext first, whatever the venv's install points at
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (funcX tests)", "language": "python",
        "env": {"PYTHONPATH": path}}))
    ksm = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)


def execute(nb, tmp: Path, cwd: Path, timeout: int = 120):
    """Execute every cell of ``nb`` in place; nbclient raises CellExecutionError
    on the first cell that fails."""
    client = NotebookClient(nb, km=kernel_manager(tmp), timeout=timeout, startup_timeout=60,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(cleanup_kc=True)
    return nb


def cell_texts(nb) -> list[str]:
    """Per code cell: its printed text, plain-text results and HTML, joined."""
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                parts.append(o.text)
            elif o.output_type in ("execute_result", "display_data"):
                parts.extend(str(o.data.get(k, "")) for k in ("text/plain", "text/html"))
            elif o.output_type == "error":
                parts.append("\n".join(o.traceback))
        out.append("\n".join(parts))
    return out
