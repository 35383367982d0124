"""``funcx endpoint list|show|status|allow|disallow`` (service-side view;
``funcx-endpoint`` manages the processes on this machine)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from funcx_cli.context import (
    FormatOption,
    check_format,
    client,
    console,
    handles_errors,
    print_document,
    print_json,
    table,
)

if TYPE_CHECKING:
    from funcx.sdk.hardware import HardwareReport

app = typer.Typer(help="Endpoints you may use, as the service sees them.\n\n"
                       "Example: funcx endpoint status laptop", no_args_is_help=True)


@app.command("list")
@handles_errors
def list_(all_: bool = typer.Option(False, "--all", help="include public endpoints of others"),
          fmt: str = FormatOption) -> None:
    """List endpoints with their status.

    Example: funcx endpoint list --all
    """
    fmt = check_format(fmt)
    fxc = client()
    eps = fxc.get_endpoints(role="any" if all_ else "owner")
    rows = []
    for e in eps:
        st = fxc.get_endpoint_status(e["uuid"])
        rows.append({"name": e["name"], "endpoint_id": e["uuid"], "status": st["status"],
                     "workers": st["details"].get("total_workers", 0),
                     "outstanding_tasks": st["details"].get("outstanding_tasks", 0),
                     "public": e.get("public", False)})
    if fmt == "json":
        print_json(rows)
        return
    from rich.text import Text

    console().print(table(None, ["Name", "Endpoint ID", "Status", "Workers", "Outstanding"],
                          [[r["name"], r["endpoint_id"],
                            Text(r["status"], style="green" if r["status"] == "online" else "red"),
                            r["workers"], r["outstanding_tasks"]] for r in rows],
                          no_wrap=("Endpoint ID",)))


@app.command()
@handles_errors
def show(endpoint: str = typer.Argument(..., help="endpoint id or name"),
         fmt: str = FormatOption) -> None:
    """Show an endpoint's metadata, its problems and its workers' hardware.

    The hardware section lists, per manager (node): CPU model, logical cores,
    memory, GPUs, and each worker's CPUs (pinned by cpu_affinity or not) and
    accelerator (available_accelerators), as the managers reported them.

    Example: funcx endpoint show laptop --format json
    """
    fmt = check_format(fmt)
    fxc = client()
    eid = fxc.resolve_endpoint(endpoint)
    doc = dict(fxc.get_endpoint_metadata(eid))
    problems = list(fxc.get_endpoint_status(eid)["details"].get("problems") or [])
    hardware = fxc.get_worker_hardware_details(eid)
    if fmt == "json":
        print_json({**doc, "problems": problems, "hardware": hardware["managers"]})
        return
    print_document(doc, fmt)
    _print_problems(problems)
    _print_hardware(hardware)


def _print_hardware(report: HardwareReport) -> None:
    """Each manager's node and its workers' CPUs and accelerators."""
    from rich.markup import escape

    from funcx.sdk.hardware import format_bytes

    out = console()
    if not report["managers"]:
        out.print(f"hardware: no manager is connected ({report['status']})", highlight=False)
        return
    rows = []
    for m in report["managers"]:
        hw = m.get("hardware") or {}
        host = str(hw.get("hostname") or m.get("hostname") or "?")
        refused = m.get("hardware_refused")
        if refused:
            out.print(f"[red]hardware of manager {escape(str(m.get('manager_id')))} refused"
                      f"[/] [{escape(str(refused.get('code')))}]: "
                      f"{escape(str(refused.get('message')))}", markup=True, highlight=False)
        if not hw:
            continue
        out.print(f"hardware of {escape(host)} (manager {escape(str(m.get('manager_id')))}): "
                  f"{escape(str(hw.get('cpu_model') or '?'))}, "
                  f"{hw.get('logical_cores', '?')} logical cores (may use "
                  f"{escape(str(hw.get('cpus') or '?'))}), memory "
                  f"{format_bytes(hw.get('memory_available'))} available of "
                  f"{format_bytes(hw.get('memory_total'))}", markup=True, highlight=False)
        for g in hw.get("gpus") or []:
            out.print(f"  GPU {g.get('index')}: {escape(str(g.get('name', '')))} "
                      f"({format_bytes(g.get('memory_total'))})", markup=True, highlight=False)
        for p in hw.get("problems") or []:
            out.print(f"[red]problem[/] {escape(str(p.get('code')))} on {escape(host)}: "
                      f"{escape(str(p.get('message')))}", markup=True, highlight=False)
    for w in report.workers():
        rows.append([w["hostname"], w["worker"],
                     f"{w['cpus'] or '?'} ({'pinned' if w['pinned'] else 'not pinned'})",
                     w["accelerator"] or "-"])
    if rows:
        out.print(table("Workers", ["Host", "Worker", "CPUs", "Accelerator"], rows))


@app.command()
@handles_errors
def status(endpoint: str = typer.Argument(..., help="endpoint id or name"),
           fmt: str = FormatOption) -> None:
    """Show whether an endpoint is online, its workers and outstanding tasks.

    Example: funcx endpoint status laptop --format json
    """
    fmt = check_format(fmt)
    fxc = client()
    st = fxc.get_endpoint_status(fxc.resolve_endpoint(endpoint))
    if fmt == "json":
        print_json(st)
        return
    d = st["details"]
    typer.echo(f"{st['status']}: {d.get('managers', 0)} manager(s), "
               f"{d.get('total_workers', 0)} worker(s) ({d.get('idle_workers', 0)} idle), "
               f"{d.get('outstanding_tasks', 0)} outstanding task(s)")
    _print_problems(d.get("problems") or [])


def _print_problems(problems: list) -> None:
    """The endpoint's problems (why its tasks may wait), one line each."""
    import time

    from rich.markup import escape

    for p in problems:
        if not isinstance(p, dict):
            continue
        since = p.get("since")
        when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
                if isinstance(since, (int, float)) else "?")
        block = f" (block {p['block']})" if p.get("block") is not None else ""
        console().print(f"[red]problem[/] {escape(str(p.get('kind', '?')))}{escape(block)} "
                        f"since {when}: {escape(str(p.get('message', '')))}",
                        markup=True, highlight=False)


@app.command()
@handles_errors
def allow(endpoint: str = typer.Argument(..., help="endpoint id or name"),
          functions: list[str] = typer.Argument(..., help="function ids or names"),
          fmt: str = FormatOption) -> None:
    """Restrict an endpoint to these functions (added to its allowed list).

    Example: funcx endpoint allow laptop fit plot
    """
    fmt = check_format(fmt)
    fxc = client()
    eid = fxc.resolve_endpoint(endpoint)
    result = fxc.add_to_whitelist(eid, [fxc.resolve_function(f) for f in functions])
    _print_allowed(eid, result, fmt)


def _print_allowed(eid: str, result: list[str], fmt: str) -> None:
    if fmt == "json":
        print_json({"endpoint_id": eid, "restricted": bool(result), "functions": result})
    else:
        typer.echo(f"Allowed functions: {', '.join(result) or '(all)'}")


@app.command()
@handles_errors
def disallow(endpoint: str = typer.Argument(..., help="endpoint id or name"),
             functions: list[str] = typer.Argument(..., help="function ids or names"),
             fmt: str = FormatOption) -> None:
    """Remove functions from an endpoint's allowed list (an empty list allows all).

    Example: funcx endpoint disallow laptop plot
    """
    fmt = check_format(fmt)
    fxc = client()
    eid = fxc.resolve_endpoint(endpoint)
    result = fxc.delete_from_whitelist(eid, [fxc.resolve_function(f) for f in functions])
    _print_allowed(eid, result, fmt)
