"""Start-up time of the ``funcx`` command (``funcx --help``, the installed
console script) beside peer CLIs measured in the same run, interleaved:
``globus-compute-endpoint --help`` (from a throwaway venv under
``.venv-compat/``; not a project dependency) and ``parsl-visualize --help`` or
``rq --help`` from our own venv.

    python -m benchmarks.cli_startup [--runs 20] [--no-install]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
COMPAT = ROOT / ".venv-compat"


def globus_compute_endpoint(install: bool) -> Path | None:
    """The peer's console script: an existing compat venv's, else one
    installed into ``.venv-compat/gcep`` (when ``install``)."""
    for name in ("gc419", "gcep"):
        exe = COMPAT / name / "bin" / "globus-compute-endpoint"
        if exe.exists():
            return exe
    if not install:
        return None
    venv = COMPAT / "gcep"
    print(f"installing globus-compute-endpoint into {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "globus-compute-endpoint"],
                   check=True)
    return venv / "bin" / "globus-compute-endpoint"


def works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def candidates(install: bool) -> dict[str, list[str]]:
    cmds = {"funcx --help": [str(VENV_BIN / "funcx"), "--help"]}
    gce = globus_compute_endpoint(install)
    if gce is not None:
        cmds["globus-compute-endpoint --help"] = [str(gce), "--help"]
    else:
        print("globus-compute-endpoint: not available (--no-install)", file=sys.stderr)
    pv = [str(VENV_BIN / "parsl-visualize"), "--help"]
    if works(pv):
        cmds["parsl-visualize --help"] = pv
    else:
        print("parsl-visualize --help fails in this venv (its optional web deps are "
              "missing); measuring rq --help instead", file=sys.stderr)
        cmds["rq --help"] = [str(VENV_BIN / "rq"), "--help"]
    return cmds


def measure(cmds: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Wall time in ms of each command, ``runs`` times, round-robin after one
    warm-up run each (so disk cache and machine load hit all alike)."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for name, cmd in cmds.items():
        if not works(cmd):
            raise SystemExit(f"{name} does not exit 0: {' '.join(cmd)}")
    for _ in range(runs):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def report(times: dict[str, list[float]]) -> str:
    base = statistics.median(times["funcx --help"])
    width = max(len(n) for n in times)
    lines = [f"{'command':<{width}}  {'runs':>4}  {'median ms':>9}  {'min ms':>7}  "
             f"{'max ms':>7}  {'vs funcx':>8}"]
    for name, t in times.items():
        med = statistics.median(t)
        lines.append(f"{name:<{width}}  {len(t):>4}  {med:>9.1f}  {min(t):>7.1f}  "
                     f"{max(t):>7.1f}  {med / base:>7.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-install", action="store_true",
                    help="do not install the globus-compute-endpoint peer if missing")
    args = ap.parse_args(argv)
    times = measure(candidates(install=not args.no_install), args.runs)
    print(f"CLI start-up, {args.runs} runs each (interleaved), Python {sys.version.split()[0]}")
    print(report(times))


if __name__ == "__main__":
    main()
