"""A worker process: takes one task at a time from its manager over ZeroMQ,
runs it, and sends the result back.  ``python -m endpoint.worker ADDR ID [DIR]``.

The manager starts it with a scrubbed environment in its working directory
DIR (outside ``FUNCX_HOME`` unless the owner configured otherwise); see
:mod:`endpoint.manager`.  A message it cannot handle is reported on stderr
and dropped: the worker keeps serving.
"""
from __future__ import annotations

import os
import sys

import zmq

from endpoint import blobs
from endpoint.execute import Executor
from endpoint.task_env import applied
from funcx.protocol.messages import Kind, ProtocolError, pack, pack_results, unpack, unpack_tasks


def serve(addr: str, worker_id: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, worker_id.encode())
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(addr)
    # the manager names where this worker's task output is captured (it reads
    # the files of a task it had to kill: endpoint.task_output.leftover)
    executor = Executor(output_prefix=os.environ.get("FUNCX_TASK_OUTPUT_PREFIX") or None)
    home = os.getcwd()  # tasks' own directories go here, whatever a task's chdir
    sock.send_multipart(pack(Kind.READY, {"pid": os.getpid()}))
    while True:
        try:
            msg = unpack(blobs.recv(sock))  # large frames: views, not copies
            if msg.kind == Kind.SHUTDOWN:
                break
            if msg.kind != Kind.TASKS:
                continue
            results = []
            for t in unpack_tasks(msg):
                # FUNCX_TASK_ID, its directory and the manager's variables (MPI)
                with applied(t, base=home):
                    results.append(executor.run(t))
            blobs.send(sock, pack_results(results))
        except ProtocolError as e:
            print(f"worker {worker_id}: dropping bad message: {e}", file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - one message never ends the worker
            print(f"worker {worker_id}: dropping a message that failed: {type(e).__name__}",
                  file=sys.stderr)
    sock.close()
    ctx.term()


def die_with_parent() -> None:
    """Ask Linux to kill this worker when its manager dies (no orphans).  A
    manager that died before this was set leaves us with another parent:
    then exit at once."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the manager's shutdown still kills its workers
    manager = os.environ.get("FUNCX_MANAGER_PID")
    if manager and os.getppid() != int(manager):
        sys.exit(0)


def limit_memory(gigabytes: float) -> None:
    """Bound this worker's address space: a function that exceeds it fails
    with MemoryError (or the worker dies, and only its task is lost: WorkerLost)."""
    import resource

    limit = int(gigabytes * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def pin_cpus() -> None:
    """Pin this worker to the CPUs its manager chose (``FUNCX_WORKER_CPUS``,
    e.g. ``0-3``; see :mod:`endpoint.affinity`) before it runs anything.  A
    CPU set the kernel refuses is reported on stderr; the worker runs unpinned."""
    from endpoint.affinity import CPUS_VAR, parse_cpu_list

    text = os.environ.get(CPUS_VAR)
    if not text or not hasattr(os, "sched_setaffinity"):
        return
    try:
        os.sched_setaffinity(0, parse_cpu_list(text))
    except (OSError, ValueError) as e:
        print(f"worker: cannot pin to CPUs {text[:64]!r} ({e}); running unpinned",
              file=sys.stderr)


def main() -> None:
    die_with_parent()
    pin_cpus()
    mem = os.environ.get("FUNCX_WORKER_MEMORY_GB")
    if mem:
        limit_memory(float(mem))
    addr, worker_id = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3 and sys.argv[3]:
        os.chdir(sys.argv[3])
    serve(addr, worker_id)


if __name__ == "__main__":
    main()
