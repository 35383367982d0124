"""Figure 9, aggregate: E endpoints on the one service, one client *process*
per endpoint, all running no-ops at once.

Each client (started with multiprocessing's ``spawn``) builds its own
FuncXClient and FuncXExecutor against the service, warms up, and then for
each round waits on a barrier shared with the others, runs N no-ops and
reports its start and end (``time.monotonic``, one clock for every process
of the host).  A round's aggregate is E*N / (last end − first start); the
note gives the spread of the clients' own rates and the service tier in
effect (web workers, ingesters) and the service's CPU per task by component
(psutil CPU times of its processes around the rounds, clients' warm-up included).
"""
from __future__ import annotations

import multiprocessing as mp
import queue
import time
from dataclasses import dataclass

from benchmarks import harness as h

#: a client that is not ready (imports, client, warm-up) or done this long
#: after the others is given up, so a stuck client never hangs the suite
WAIT_S = 600.0


def figure(workers: int, tasks: int) -> str:
    return f"9 aggregate: E endpoints × {workers} workers, {tasks:,} no-ops per client"


def system(endpoints: int) -> str:
    return f"funcX, {endpoints} endpoint{'' if endpoints == 1 else 's'} ({endpoints} client " \
           f"process{'' if endpoints == 1 else 'es'})"


@dataclass(frozen=True)
class Span:
    """One client's round: when its first submit started and its last result came."""

    client: int
    start: float
    end: float


def aggregate_rate(spans: list[Span], tasks: int) -> float:
    """Tasks/s of every client together: all tasks over first start to last end."""
    first, last = min(s.start for s in spans), max(s.end for s in spans)
    return len(spans) * tasks / (last - first)


def client_rates(spans: list[Span], tasks: int) -> list[float]:
    """Each client's own tasks/s in a round."""
    return [tasks / (s.end - s.start) for s in spans]


def cpu_per_task(before: dict[str, float], after: dict[str, float], tasks: int) -> str:
    """The service's CPU µs per task by component, from two
    ``Fabric.service_cpu`` samples around ``tasks`` tasks (warm-ups included)."""
    parts = {k: (after[k] - before.get(k, 0.0)) * 1e6 / tasks for k in after}
    shown = [f"{k} {parts[k]:,.0f}" for k in ("web", "ingesters", "redis") if k in parts]
    return f"service CPU µs/task {sum(parts.values()):,.0f} ({', '.join(shown)})"


def client_main(index: int, endpoint_id: str, tasks: int, rounds: int, barrier, out) -> None:
    """One client process: its own FuncXClient and FuncXExecutor, ``rounds``
    rounds of ``tasks`` no-ops, each started on ``barrier``; puts
    ``(index, round, start, end, error)`` on ``out`` (round -1: setup failed)."""
    ex = None
    try:
        from benchmarks.fabric import run_tasks
        from benchmarks.peers import noop
        from funcx import FuncXClient, FuncXExecutor

        fxc = FuncXClient()
        fxc.throttling_enabled = False  # the benchmark's own traffic
        ex = FuncXExecutor(endpoint_id=endpoint_id, client=fxc)
        run_tasks(ex, min(tasks, 200), noop)  # registers the no-op; warm up
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the row
        out.put((index, -1, 0.0, 0.0, f"{type(e).__name__}: {e}"))
        barrier.abort()
        return
    try:
        for r in range(rounds):
            barrier.wait(WAIT_S)
            t0 = time.monotonic()
            run_tasks(ex, tasks, noop)
            out.put((index, r, t0, time.monotonic(), None))
    except BaseException as e:  # noqa: BLE001
        out.put((index, -1, 0.0, 0.0, f"{type(e).__name__}: {e}"))
        barrier.abort()
    finally:
        ex.shutdown(wait=False)


def run_clients(endpoint_ids: list[str], tasks: int, rounds: int) -> list[list[Span]]:
    """Start one spawned client process per endpoint; return each round's spans."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(endpoint_ids) + 1)  # the clients and this process
    out = ctx.Queue()
    procs = [ctx.Process(target=client_main, name=f"bench-client-{i}",
                         args=(i, eid, tasks, rounds, barrier, out))
             for i, eid in enumerate(endpoint_ids)]
    for p in procs:
        p.start()
    try:
        spans: list[list[Span]] = []
        for r in range(rounds):
            try:
                barrier.wait(WAIT_S)  # every client is ready: the round starts
            except Exception:
                raise RuntimeError(f"a client failed before round {r}: {_errors(out)}") from None
            got: list[Span] = []
            while len(got) < len(procs):
                try:
                    index, rnd, t0, t1, err = out.get(timeout=WAIT_S)
                except queue.Empty:
                    raise RuntimeError(f"no result from a client within {WAIT_S:.0f}s") from None
                if err:
                    barrier.abort()
                    raise RuntimeError(f"client {index}: {err}")
                got.append(Span(index, t0, t1))
            spans.append(got)
        return spans
    finally:
        for p in procs:
            p.join(30)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)
        out.close()


def _errors(out) -> str:
    """What failed clients reported (empty when none has yet)."""
    msgs = []
    try:
        while True:
            index, _r, _t0, _t1, err = out.get(timeout=1)
            if err:
                msgs.append(f"client {index}: {err}")
    except queue.Empty:
        pass
    return "; ".join(msgs) or "no reason reported"


def measure(table: h.Table, fab, counts: list[int], workers: int, tasks: int, repeat: int,
            tier: str) -> None:
    """Rows of figure 9: for each endpoint count, ``repeat`` rounds of every
    client at once.  The notes give each count against the first, the
    clients' own rates and (on the first row) the service tier ``tier``."""
    fig, first = figure(workers, tasks), None
    for e in counts:
        name = system(e)

        def go(e: int = e, name: str = name) -> None:
            nonlocal first
            eids = fab.aggregate_endpoints(e, workers)
            cpu0 = fab.service_cpu()
            rounds = run_clients(eids, tasks, repeat)
            cpu = cpu_per_task(cpu0, fab.service_cpu(), e * (tasks * repeat + min(tasks, 200)))
            rates = [aggregate_rate(spans, tasks) for spans in rounds]
            per_client = [x for spans in rounds for x in client_rates(spans, tasks)]
            row = table.add(fig, name, rates, "tasks/s")
            notes = [f"per client {h.fmt(min(per_client))}–{h.fmt(max(per_client))} tasks/s",
                     cpu]
            if first is None:
                first = row
                notes.append(tier)
            else:
                notes.insert(0, f"{row.median / first.median:.2f}× {first.system.split(' (')[0]}")
            row.note = "; ".join(notes)

        h.guard(table, fig, name, go)
    fab.stop_aggregate_endpoints()
