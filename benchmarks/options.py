"""The list-valued options of ``python -m benchmarks run`` and their defaults.

Pure: parsing and default sizing only, so the command line is tested without
starting anything.  A bad value raises :class:`argparse.ArgumentTypeError`
with a message naming the option, the bad item and what is accepted.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

#: the figures ``--only`` accepts, in the order they run
FIGURES = ["throughput", "roundtrip", "payload", "startup", "batch", "memory", "cli", "scaling",
           "aggregate", "large-payload"]

#: upper bounds that catch a typo (``--workers 1,20000``) before anything starts
MAX_WORKERS = 1024
MAX_ENDPOINTS = 64
MAX_PAYLOAD_MIB = 1024


def parse_counts(text: str, high: int) -> list[int]:
    """The distinct whole numbers of a comma list like ``"1,2,4"``, ascending.

    Each must be between 1 and ``high``; anything else (``"1,x"``, ``"0"``,
    an empty list) raises ``ArgumentTypeError`` saying what is accepted
    (argparse prefixes the option's name)."""
    items = [x.strip() for x in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError(f"empty: give a comma-separated list of whole "
                                         f"numbers from 1 to {high}, e.g. 1,2,4")
    out: set[int] = set()
    for item in items:
        if not item:
            continue
        try:
            n = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not a whole number (give a comma-separated list of "
                f"whole numbers from 1 to {high}, e.g. 1,2,4)") from None
        if not 1 <= n <= high:
            raise argparse.ArgumentTypeError(f"{n} is out of range (1 to {high})")
        out.add(n)
    return sorted(out)


def parse_positive(text: str, high: int) -> int:
    """One whole number from 1 to ``high`` (``--agg-workers``, ``--agg-tasks``)."""
    if "," in text:
        raise argparse.ArgumentTypeError(f"{text!r}: give one whole number from 1 to {high}")
    counts = parse_counts(text, high)
    return counts[0]


def default_workers(cores: int | None) -> list[int]:
    """Worker counts of the scaling figure: powers of two up to ``cores`` and
    ``cores`` itself (2 cores: 1,2; 6: 1,2,4,6; 16: 1,2,4,8,16)."""
    cores = max(1, cores or 1)
    out, n = [], 1
    while n <= cores:
        out.append(n)
        n *= 2
    if out[-1] != cores:
        out.append(cores)
    return out


@dataclass(frozen=True)
class Plan:
    """What the new figures measure: worker counts, endpoint counts, sizes."""

    workers: list[int]  #: worker counts of the scaling figure (funcX and every peer)
    scaling_tasks: int  #: no-ops per scaling sample
    endpoints: list[int]  #: endpoint counts of the aggregate figure
    agg_workers: int  #: workers per endpoint in the aggregate figure
    agg_tasks: int  #: no-ops per client process per round of the aggregate figure
    payload_mib: list[int]  #: array sizes of the large-payload figure

    def calls(self, mib: int, quick: bool) -> int:
        """Calls per p50 of the large-payload figure at ``mib``: 5 up to 10 MiB,
        3 above (3 with ``--quick``)."""
        return 3 if quick or mib > 10 else 5


def plan(a: argparse.Namespace, quick: bool, cores: int | None = None) -> Plan:
    """The :class:`Plan` of parsed options ``a``, defaults filled in for the
    mode and for ``cores`` (default: this machine's ``os.cpu_count()``)."""
    cores = os.cpu_count() if cores is None else cores
    return Plan(
        workers=a.workers or default_workers(cores),
        scaling_tasks=2_000 if quick else 10_000,
        endpoints=a.endpoints or ([1, 2] if quick else [1, 2, 4]),
        agg_workers=a.agg_workers or 2,
        agg_tasks=a.agg_tasks or (2_000 if quick else 10_000),
        payload_mib=a.payload_mib or ([1, 10] if quick else [1, 10, 100]),
    )


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The options of the scaling, aggregate and large-payload figures."""
    run.add_argument("--workers", metavar="N,N,...",
                     type=lambda t: parse_counts(t, MAX_WORKERS),
                     help="worker counts of the scaling figure, funcX and every peer "
                          "(default: powers of two up to the core count, and the core count; "
                          f"here {','.join(map(str, default_workers(os.cpu_count())))})")
    run.add_argument("--endpoints", metavar="E,E,...",
                     type=lambda t: parse_counts(t, MAX_ENDPOINTS),
                     help="endpoint counts of the aggregate figure, one client process per "
                          "endpoint (default 1,2,4; 1,2 with --quick)")
    run.add_argument("--agg-workers", metavar="W",
                     type=lambda t: parse_positive(t, MAX_WORKERS),
                     help="workers of each endpoint in the aggregate figure (default 2)")
    run.add_argument("--agg-tasks", metavar="N",
                     type=lambda t: parse_positive(t, 10_000_000),
                     help="no-ops each client runs per round of the aggregate figure "
                          "(default 10,000; 2,000 with --quick)")
    run.add_argument("--payload-mib", metavar="M,M,...",
                     type=lambda t: parse_counts(t, MAX_PAYLOAD_MIB),
                     help="array sizes in MiB of the large-payload figure (default 1,10,100; "
                          "1,10 with --quick)")
