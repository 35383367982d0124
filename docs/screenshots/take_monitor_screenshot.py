"""Screenshots of the notebook displays in JupyterLab, for the README:

- docs/task-monitor-running.png: the task monitor mid-run (a bar per function, ETA)
- docs/task-monitor.png: the monitor once the group is done (its final state)
- docs/endpoint-panel.png: the endpoint panel (``%funcx endpoints``)
- docs/remote-exception.png: a remote exception (``%funcx run`` of a failing function)

Starts a funcX service and an endpoint named "tutorial" in a temporary
FUNCX_HOME, then JupyterLab on a copy of notebooks/03_magics_monitor.ipynb,
drives Debian's Chromium (headless) with Playwright's Python API to run every
cell, captures each display as it appears, saves the notebook and checks that
the saved file holds the monitor's final state (what a reader without the
kernel sees), and stops everything it started.

    apt-get install -y chromium
    pip install -e '.[jupyter]' playwright
    python docs/screenshots/take_monitor_screenshot.py [OUT_DIR]
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "03_magics_monitor.ipynb"
CHROMIUM = "/usr/bin/chromium"
TASKS_DONE = re.compile(r"(\d+)\s*/\s*\1 done")  # the monitor once all are done
RUNNING = re.compile(r"ETA")  # the live monitor's header while tasks run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_settings(settings_dir: Path) -> None:
    """No news pop-up; every cell in the DOM (no windowing), a light theme."""
    for plugin, values in {
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                        "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/themes": {"theme": "JupyterLab Light"},
    }.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def start_lab(root: Path, env: dict, log_path: Path) -> tuple[subprocess.Popen, str]:
    """JupyterLab on ``root``; returns once it says it is serving."""
    port, token = free_port(), secrets.token_hex(16)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--allow-root"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    log = open(log_path, "w")
    ready, serving = threading.Event(), threading.Event()

    def drain() -> None:  # the server's log: wait for the line with its URL
        for line in proc.stderr:
            log.write(line)
            log.flush()
            if f"http://127.0.0.1:{port}/lab" in line:
                serving.set()
                ready.set()
        ready.set()  # it exited

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(120) or not serving.is_set():
        proc.kill()
        raise RuntimeError("jupyter lab did not start:\n" + log_path.read_text()[-3000:])
    return proc, f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}?token={token}"


def screenshot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860},
                                    device_scale_factor=1)
            try:
                run_all_and_capture(page, url, out)
            except Exception:
                page.screenshot(path=str(out / "failed.png"))
                print(f"failed: the page as it was is in {out / 'failed.png'}")
                raise
        finally:
            browser.close()


def settle(page, cell) -> None:
    """Put ``cell`` at the top of the view, the mouse out of the way, and let it paint."""
    cell.evaluate("cell => cell.scrollIntoView({block: 'start'})")
    page.mouse.move(0, 0)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def run_all_and_capture(page, url: str, out: Path) -> None:
    """Open the notebook, run all its cells, capture the four displays."""
    page.goto(url)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    # the kernel is connected and idle ("No Kernel | Initializing" until then)
    page.wait_for_function(
        """() => {
            const t = document.querySelector('.jp-StatusBar-Left')?.textContent || '';
            return !t.includes('No Kernel') && /\\| Idle/.test(t);
        }""",
        timeout=120_000)
    page.keyboard.press("Control+b")  # fold the file browser away: room for the notebook
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
    out.mkdir(parents=True, exist_ok=True)

    # 1. mid-run: the live widget, some tasks done, an ETA
    monitor = page.locator(".jp-Cell", has_text="monitor = %funcx monitor").first
    running = monitor.locator(".widget-html-content", has_text=RUNNING).first
    running.wait_for(timeout=120_000)
    settle(page, monitor)
    page.screenshot(path=str(out / "task-monitor-running.png"))
    print(f"monitor mid-run: {running.inner_text()!r}")

    # every cell has run (no "[*]" prompt left, every one numbered) ...
    page.wait_for_function(
        """() => {
            const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent));
        }""", timeout=180_000)
    # ... no cell failed but the last (a remote exception on purpose) ...
    cells = page.locator(".jp-CodeCell")
    for i in range(cells.count() - 1):
        error = cells.nth(i).locator(".jp-OutputArea-output[data-mime-type="
                                     "'application/vnd.jupyter.stderr']", has_text="Traceback")
        if error.count():
            raise RuntimeError(f"cell {i} failed: {error.first.inner_text()[:2000]}")

    # 2. done: the final state has replaced the widget in the monitor's cell
    final = monitor.locator(".funcx-monitor", has_text=TASKS_DONE).first
    final.wait_for(timeout=120_000)
    settle(page, monitor)
    page.screenshot(path=str(out / "task-monitor.png"))
    print(f"monitor done: {final.inner_text().splitlines()[0]!r}")

    # 3. the endpoint panel
    panel = page.locator(".jp-Cell", has_text="%funcx endpoints").first
    panel.locator("table", has_text="tutorial").first.wait_for(timeout=60_000)
    settle(page, panel)
    panel.screenshot(path=str(out / "endpoint-panel.png"))

    # 4. the remote exception (the last cell)
    error = cells.last.locator(".jp-OutputArea-output", has_text="Remote traceback").first
    error.wait_for(timeout=60_000)
    settle(page, cells.last)
    cells.last.screenshot(path=str(out / "remote-exception.png"))
    print(f"remote exception: {error.inner_text().splitlines()[0]!r}")

    page.keyboard.press("Control+s")  # the notebook as a reader will open it
    page.wait_for_function(
        "() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)


def check_saved(path: Path) -> None:
    """The saved notebook's monitor cell holds the final state, not a widget."""
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "".join(c["source"]).startswith("monitor = %funcx"))
    data = [o.get("data", {}) for o in cell["outputs"]]
    if len(data) != 1 or "application/vnd.jupyter.widget-view+json" in data[0] \
            or not TASKS_DONE.search("".join(data[0].get("text/plain", ""))):
        raise RuntimeError(f"the saved notebook's monitor output is not its final state: {data}")
    print("saved notebook keeps the final state:",
          "".join(data[0]["text/plain"]).splitlines()[0][:120])


def main() -> None:
    out = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO / "docs"
    tmp = Path(tempfile.mkdtemp(prefix="funcx-screenshot-"))
    home, root = tmp / "funcx-home", tmp / "notebooks"
    home.mkdir()
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    os.environ["FUNCX_HOME"] = str(home)  # before funcX reads any setting
    os.environ.pop("FUNCX_SERVICE_ADDRESS", None)
    os.environ.pop("FUNCX_REDIS_URL", None)
    sys.path.insert(0, str(REPO))
    from backend import control
    from endpoint import daemon
    from endpoint.config_file import write_template
    from endpoint.paths import EndpointDir

    lab = None
    env = dict(os.environ, FUNCX_TUTORIAL_ENDPOINT="tutorial",
               JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "lab-workspaces"))
    lab_settings(tmp / "lab-settings")
    try:
        print("service:", control.start_detached(port=0))
        ep = EndpointDir("tutorial")
        write_template(ep.config_file, "tutorial", workers=2)
        print("endpoint tutorial:", daemon.start("tutorial"))
        lab, url = start_lab(root, env, tmp / "jupyter-lab.log")
        screenshot(url, out)
        check_saved(root / NOTEBOOK.name)
        print(f"wrote {out}/{{task-monitor-running,task-monitor,endpoint-panel,remote-exception}}.png")
    finally:
        if lab is not None:
            lab.terminate()
            try:
                lab.wait(30)
            except subprocess.TimeoutExpired:
                lab.kill()
                lab.wait()
        daemon.stop("tutorial")
        control.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
