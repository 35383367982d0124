"""The tutorial notebooks (notebooks/*.ipynb) run top to bottom in a real
Jupyter kernel against the real local service and endpoint; any error cell
fails the test (nbclient raises CellExecutionError)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
from notebook_kernel import cell_texts, execute

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def run_notebook(endpoint, tmp_path, monkeypatch):
    """Execute a notebook of notebooks/ (its endpoint: pytest-ep); return it executed."""
    monkeypatch.setenv("FUNCX_TUTORIAL_ENDPOINT", "pytest-ep")  # the kernel inherits it

    def run(name: str):
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        execute(nb, tmp_path, NOTEBOOKS)
        assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
        return nb

    return run


def test_committed_notebooks_are_valid_and_cleared():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["01_tutorial.ipynb", "02_executor.ipynb", "03_magics_monitor.ipynb",
                     "04_shell_mpi_gpu.ipynb"]
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), name
        assert 'os.environ.get("FUNCX_TUTORIAL_ENDPOINT", "tutorial")' in \
            "".join(c.source for c in code), name


def test_tutorial_notebook(run_notebook):
    texts = cell_texts(run_notebook("01_tutorial.ipynb"))
    everything = "\n".join(texts)
    assert "FuncXClient" in texts[0] and "Session task group" in texts[0]  # client HTML repr
    assert "online" in texts[1] and "Workers" in texts[1]  # endpoint status repr
    assert "Hello World!" in everything
    assert re.search(r"^115$", everything, re.M)  # sum([1..5], start=100)
    assert "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in everything
    assert "caught ZeroDivisionError: division by zero" in everything
    assert "Traceback (most recent call last)" in everything and ", in div_by_zero" in everything


def test_executor_notebook(run_notebook):
    nb = run_notebook("02_executor.ipynb")
    texts = cell_texts(nb)
    everything = "\n".join(texts)
    assert re.search(r"^14$", everything, re.M)
    assert "FuncXFuture" in texts[2] and "success" in texts[2]  # the future's repr
    arrival = ast.literal_eval(next(t for t in texts if t.startswith("[")).strip())
    assert sorted(arrival) == [0, 1, 4, 9, 16, 25] and arrival[-1] == 0  # the slow one last
    assert "97 takes the most steps: 118" in everything
    assert "caught ZeroDivisionError: division by zero" in everything
    assert "--- remote traceback (task " in everything  # the note, printed by the notebook
    assert ", in div_by_zero" in everything
    # left uncaught: the remote frame with its source line, once, no local plumbing
    nb_cells = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for o in nb_cells[-1].outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "ZeroDivisionError"
    tb = "\n".join(errors[0].traceback)
    assert "return x / 0" in tb and tb.count("ZeroDivisionError: division by zero") == 1
    assert "concurrent" not in tb and "_base.py" not in tb


def test_magics_monitor_notebook(run_notebook):
    nb = run_notebook("03_magics_monitor.ipynb")
    texts = cell_texts(nb)
    by_source = {c.source.strip(): t for c, t in
                 zip([c for c in nb.cells if c.cell_type == "code"], texts)}
    assert "online" in by_source["%funcx endpoint $ENDPOINT"]
    assert by_source["%funcx run add(1, 2)"].strip().endswith("3")
    assert "multiplying on" in next(t for s, t in by_source.items() if "--out product" in s)
    assert by_source["product"].strip() == "42"
    assert by_source["%%funcx --in product\nproduct + 1"].strip().endswith("43")
    # --no-wait: a future that shows its task id; its result is the cell's value
    later = next(t for s, t in by_source.items() if s.startswith("%%funcx --in x --no-wait"))
    assert re.search(r"CellFuture task_id=[0-9a-f-]{36}", later)
    assert by_source[next(s for s in by_source if s.startswith("later = _"))].strip() == \
        "(36, 'squaring remotely\\n')"
    # the monitor: once the group is done, its cell holds the final state as HTML and text
    monitor_cell = next(c for c in nb.cells if c.source.startswith("monitor = %funcx monitor"))
    assert [WIDGET in o.get("data", {}) for o in monitor_cell.outputs] == [False]
    final = monitor_cell.outputs[0].data
    assert "<b>32</b> / 32 done" in final["text/html"]
    for text in ("simulate", "analyse", "ValueError: unstable parameters",
                 "KeyError: &#x27;calibration&#x27;"):
        assert text in final["text/html"], text
    assert "simulate: 24/24 (2 failed, 22 success)" in final["text/plain"]
    assert "2 × ValueError: unstable parameters" in final["text/plain"]
    assert "{'failed': 3, 'success': 29} 32 / 32 done" in "\n".join(texts)
    status = by_source["%funcx status $group"]
    assert "'total': 32" in status and "'done': 32" in status
    # the remote exception at the end: the function's line, once, no local frames
    errors = [o for o in nb.cells[-1].outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "RemoteError"
    tb = "\n".join(errors[0].traceback)
    assert 'raise ValueError(f"gain {gain} saturates the detector")' in tb
    assert tb.count("ValueError: gain 3 saturates the detector") == 1 and "magics.py" not in tb
    panel = next(c for c in nb.cells if c.source.strip() == "%funcx endpoints")
    assert any(WIDGET in o.get("data", {}) for o in panel.outputs)


@pytest.fixture
def mpi_endpoint_for_notebook(fxc, service, monkeypatch):
    """An endpoint in MPI mode (mpiexec), named for the notebook's kernel."""
    from test_mpi_function import MPI_CONFIG, endpoint_with_config, need

    need("mpiexec")
    with endpoint_with_config(fxc, "nb", MPI_CONFIG) as ep:
        monkeypatch.setenv("FUNCX_TUTORIAL_MPI_ENDPOINT", ep.name)  # the kernel inherits it
        yield ep


def test_shell_mpi_gpu_notebook(run_notebook, mpi_endpoint_for_notebook):
    nb = run_notebook("04_shell_mpi_gpu.ipynb")
    texts = cell_texts(nb)
    everything = "\n".join(texts)
    by_source = {c.source.strip(): t for c, t in
                 zip([c for c in nb.cells if c.cell_type == "code"], texts)}
    greet = next(t for s, t in by_source.items() if s.startswith("greet = "))
    cmd, code, said, task_dir = greet.strip().splitlines()
    assert cmd == "echo hello from a shell > out.txt; cat out.txt; basename $(pwd)"
    assert (code, said) == ("0", "hello from a shell")
    assert re.fullmatch(r"[0-9a-f-]{36}", task_dir)  # the task's own directory
    assert re.search(r"^2 ls: cannot access '/no/such/directory'", everything, re.M)
    assert "124 subprocess.TimeoutExpired started" in everything
    assert "'stdout': '998\\n999\\n1000\\n'" in everything and "'returncode': 0" in everything
    assert re.search(r"^xcnuf$", everything, re.M)  # %funcx shell with a notebook variable
    mpi = next(t for s, t in by_source.items() if s.startswith("root_options"))
    assert mpi.splitlines()[0].startswith("mpiexec -n 2 --host ")
    assert "rank 0 of 2\nrank 1 of 2" in mpi
    assert "MPI_NODES_EXCEEDED\nresource_specification.num_nodes 4 exceeds the 1 node" \
        in everything
    assert "succeeded on attempt 3\n['failed', 'failed', 'success']" in everything
    assert "the area is 144" in everything
    assert re.search(r"its argument task [0-9a-f-]{36} \(boom\) failed with RuntimeError: "
                     r"boom 3", everything)
    assert "CUDA_VISIBLE_DEVICES=" in everything and "manager" in everything
    # results any language can read: JSON first, dill for what JSON cannot take
    # (the kernel may split one cell's stream output in two: whitespace between lines varies)
    assert re.search(r"\['1', '2', '3'\]\s+'11\\n' 0\s+144 \['a', 'b'\]", everything)
