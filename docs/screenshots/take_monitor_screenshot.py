"""Screenshot of the task monitor in JupyterLab: docs/task-monitor.png.

Starts a funcX service and an endpoint named "tutorial" in a temporary
FUNCX_HOME, then JupyterLab on a copy of notebooks/03_magics_monitor.ipynb,
drives Debian's Chromium (headless) with Playwright's Python API to run every
cell, waits until the monitor shows every task done, saves the screenshot and
stops everything it started.

    apt-get install -y chromium
    .venv/bin/python docs/screenshots/take_monitor_screenshot.py [OUT.png]
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
TASKS_DONE = re.compile(r"(\d+)\s*/\s*\1 done")  # the monitor's label once all are done


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
                page.screenshot(path=str(out.with_suffix(".failed.png")))
                print(f"failed: the page as it was is in {out.with_suffix('.failed.png')}")
                raise
        finally:
            browser.close()


def run_all_and_capture(page, url: str, out: Path) -> None:
    """Open the notebook, run all its cells, wait for the monitor to finish, capture it."""
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
    # every cell has run (no "[*]" prompt left, the last one numbered) ...
    page.wait_for_function(
        """() => {
            const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent));
        }""", timeout=180_000)
    # ... and the monitor shows every task done
    monitor = page.locator(".jp-Cell", has_text="monitor = %funcx monitor").first
    label = monitor.locator(".widget-html-content", has_text=TASKS_DONE).first
    label.wait_for(timeout=120_000)
    errors = page.locator(".jp-OutputArea-output[data-mime-type="
                          "'application/vnd.jupyter.stderr']", has_text="Traceback")
    if errors.count():
        raise RuntimeError(f"a cell failed: {errors.first.inner_text()[:2000]}")
    # the monitor's cell at the top of the view
    monitor.evaluate("cell => cell.scrollIntoView({block: 'start'})")
    page.mouse.move(0, 0)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out))
    print(f"monitor: {label.inner_text()!r}")


def main() -> None:
    out = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO / "docs" / "task-monitor.png"
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
        print(f"wrote {out}")
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
