"""Commented ``config.py`` templates for ``funcx-endpoint configure --template``."""
from __future__ import annotations

HEADER = '''"""funcX endpoint configuration for {name!r} ({template} template).

Edit, then restart the endpoint: `funcx-endpoint restart {name}`.  Any Parsl
provider and launcher works (parsl.providers, parsl.launchers).
"""
'''

COMMON = '''    # worker processes per manager (one manager per node); 0: one per core
    max_workers_per_node={workers},
    # seconds a block may sit idle before it is scaled in (down to min_blocks)
    max_idletime=120,
    # heartbeats between the interchange and managers, and to the service (s)
    heartbeat_period=2,
    heartbeat_threshold=10,
    # per-task walltime in seconds (None: unlimited); a task may override it
    # with resource_specification={{"walltime": ...}}
    walltime=None,
    # the most any task may ask for (s; None: no bound): larger requests are
    # refused at submit, and managers never run a task longer
    max_walltime=None,
    # where tasks run: None is tasks_working_dir in this endpoint's directory;
    # a relative path is relative to this directory
    working_dir=None,
    # True: managers (the worker pools) log at DEBUG, in the block's .err file
    worker_debug=False,
    # GPUs of each node: a count, a list of ids or "0,1"; one worker per
    # accelerator, each with its own CUDA_VISIBLE_DEVICES (None: none)
    available_accelerators=None,
    # pin workers to cores: "none", "block", "block-reverse", "alternating" or
    # "list:0,1:2,3" (one core list per worker)
    cpu_affinity="none",
    # milliseconds between the interchange's housekeeping passes
    poll_period=100,
'''

LOCAL = '''from parsl.providers import LocalProvider

from endpoint.config import Config

config = Config(
    # managers run as processes on this machine
    provider=LocalProvider(
        init_blocks=1,   # blocks started with the endpoint
        min_blocks=0,    # blocks kept even when idle
        max_blocks=1,    # the most blocks at once
    ),
''' + COMMON + ''')
'''

SLURM = '''from parsl.launchers import SrunLauncher
from parsl.providers import SlurmProvider

from endpoint.config import Config

config = Config(
    provider=SlurmProvider(
        partition="debug",          # your partition
        account=None,               # your allocation, if the site needs one
        nodes_per_block=1,
        init_blocks=0,              # no job until tasks arrive
        min_blocks=0,
        max_blocks=2,
        walltime="01:00:00",
        worker_init="",             # e.g. "module load python; source ~/venv/bin/activate"
        launcher=SrunLauncher(),    # one manager per node of the block
    ),
    # where managers on the compute nodes reach this (login) node.  "detect":
    # the address of the interface that routes off this host; to choose it:
    #   address="10.0.0.5",                  # this host's address on the compute network
    #   address=address_by_interface("ib0"), # from parsl.addresses import address_by_interface
    # a loopback address (127.0.0.1) cannot work here: managers run elsewhere
    address="detect",
''' + COMMON + ''')
'''

PBS = '''from parsl.launchers import MpiExecLauncher
from parsl.providers import PBSProProvider

from endpoint.config import Config

config = Config(
    provider=PBSProProvider(
        queue="debug",              # your queue
        account=None,
        nodes_per_block=1,
        cpus_per_node=1,
        init_blocks=0,
        min_blocks=0,
        max_blocks=2,
        walltime="01:00:00",
        worker_init="",
        launcher=MpiExecLauncher(bind_cmd="--cpu-bind", overrides="--depth=64 --ppn 1"),
    ),
    # where managers on the compute nodes reach this (login) node.  "detect":
    # the address of the interface that routes off this host; to choose it:
    #   address="10.0.0.5",                  # this host's address on the compute network
    #   address=address_by_interface("ib0"), # from parsl.addresses import address_by_interface
    # a loopback address (127.0.0.1) cannot work here: managers run elsewhere
    address="detect",
''' + COMMON + ''')
'''

KUBERNETES = '''# needs the `kubernetes` Python package: pip install kubernetes
from parsl.providers import KubernetesProvider

from endpoint.config import Config

config = Config(
    provider=KubernetesProvider(
        image="python:3.11",        # an image with this project installed
        namespace="default",
        init_blocks=0,
        min_blocks=0,
        max_blocks=4,
        worker_init="pip install funcx-selfhosted",
    ),
    # where pods reach this host.  "detect": the address of the interface that
    # routes off this host; "0.0.0.0" binds every interface and tells pods the
    # detected address; or set it: address="10.0.0.5" or, with
    # `from parsl.addresses import address_by_interface`, address_by_interface("eth0")
    address="detect",
''' + COMMON + ''')
'''

TEMPLATES = {"local": LOCAL, "slurm": SLURM, "pbs": PBS, "kubernetes": KUBERNETES}


def render(name: str, template: str = "local", workers: int = 0) -> str:
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
    return (HEADER.format(name=name, template=template)
            + TEMPLATES[template].format(workers=workers))
