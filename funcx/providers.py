"""``funcx.providers``: the providers the funcX 0.0.1a5 reference documents
under this name.  ``KubernetesProvider`` is Parsl's (the same options: image,
namespace, nodes_per_block, init/min/max_blocks, max_cpu, max_mem, init_cpu,
init_mem, parallelism, worker_init, pod_name, user_id, group_id,
run_as_non_root, secret, persistent_volumes); it needs the ``kubernetes``
package.  Every other Parsl provider works as well (``parsl.providers``).
"""
from __future__ import annotations

from parsl.providers import KubernetesProvider, LocalProvider

__all__ = ["KubernetesProvider", "LocalProvider"]
