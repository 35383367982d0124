"""Command lines that start a worker inside a container (pure logic).

``worker_mode`` picks the runtime: ``docker`` / ``podman`` (``run``) or
``singularity`` / ``apptainer`` (``exec``).  The worker needs this project
installed in the image; it talks to its manager over an ipc socket, whose
directory is mounted into the container.
"""
from __future__ import annotations

import shlex

OCI = ("docker", "podman")
HPC = ("singularity", "apptainer")


def worker_command(worker_mode: str, image: str, worker_args: list[str], ipc_dir: str,
                   working_dir: str, runtime: str | None = None, options: str = "",
                   container_id: str = "") -> list[str]:
    """argv that runs ``python3 -m endpoint.worker *worker_args`` in ``image``."""
    exe = runtime or worker_mode
    inner = ["python3", "-m", "endpoint.worker", *worker_args]
    extra = shlex.split(options)
    if worker_mode in OCI:
        return [exe, "run", "--rm", "--network", "host",
                "-v", f"{ipc_dir}:{ipc_dir}", "-v", f"{working_dir}:{working_dir}",
                "-w", working_dir, "-e", f"FUNCX_CONTAINER_ID={container_id}",
                *extra, image, *inner]
    if worker_mode in HPC:
        return [exe, "exec", "--bind", f"{ipc_dir},{working_dir}", "--pwd", working_dir,
                "--env", f"FUNCX_CONTAINER_ID={container_id}", *extra, image, *inner]
    raise ValueError(f"worker_mode {worker_mode!r} does not run containers")
