"""The worker hardware report (issue 18, item 7) and accelerators/pinning on a
real endpoint (item 3).

Pure parts: the report's schema (strict, bounded) at each boundary — a
manager's Register, the service reading what the agent wrote — the probes
(nvidia-smi's output parsed, absent tools harmless) and the interchange's book.
Real parts: the session's service and an endpoint of this module's own with
two fake accelerators and ``cpu_affinity="block"``: each task sees exactly
its worker's device and CPU; ``fxc.get_worker_hardware_details``, ``funcx
endpoint show`` (table and JSON) and the endpoint panel show the same."""
from __future__ import annotations

import json
import os
import uuid

import msgspec
import pytest
from faults.faultlib import wait_until

from endpoint.hardware_report import HardwareBook
from funcx.protocol import error_codes, keys
from funcx.protocol.hardware import (
    MAX_WORKERS,
    NodeHardware,
    WorkerHardware,
    as_dict,
    checked,
    cut,
    decode_hardware,
    screen_manager_details,
)
from funcx.protocol.messages import Heartbeat, Kind, ProtocolError, Register, pack, unpack
from funcx.sdk.hardware import (
    HardwareReport,
    format_bytes,
    node_hardware,
    nvidia_gpus,
    parse_nvidia_smi,
    run_hardware_report,
    worker_hardware_details,
)

ENDPOINT = "pytest-hw"
DEVICES = ["GPU-a", "GPU-b"]


# ------------------------------------------------------------ the schema
def test_this_nodes_report_passes_its_schema():
    hw = node_hardware([WorkerHardware(0, "0", "GPU-a")], ["GPU-a"],
                       [("CPU_AFFINITY_UNSATISFIABLE", "x" * 5000)])
    assert checked(hw) is not None
    assert hw.logical_cores == os.cpu_count() and hw.memory_total > 0
    assert hw.cpu_model and len(hw.problems[0].message) <= 512


def lying(**fields) -> dict:
    return {**as_dict(NodeHardware(hostname="n1", workers=[WorkerHardware(0)])), **fields}


@pytest.mark.parametrize("fields, where", [
    ({"cpu_model": "x" * 10_000}, "$.cpu_model"),
    ({"hostname": "h" * 300}, "$.hostname"),
    ({"workers": [{"worker": i} for i in range(MAX_WORKERS + 1)]}, "$.workers"),
    ({"workers": [{"worker": 0, "cpus": "0; rm -rf /"}]}, "$.workers[0].cpus"),
    ({"accelerators": ["a b"]}, "$.accelerators[0]"),
    ({"memory_total": -1}, "$.memory_total"),
    ({"gpus": [{"index": 0, "name": "n" * 1000}]}, "$.gpus[0].name"),
    ({"secret_field": "x"}, "secret_field"),
])
def test_a_lying_report_is_refused_naming_the_field(fields, where):
    with pytest.raises(ValueError, match="bad hardware report") as e:
        decode_hardware(lying(**fields))
    assert where in str(e.value)


def test_a_manager_whose_register_lies_about_its_hardware_is_refused_by_the_interchange():
    """The interchange decodes REGISTER with unpack(): a bad report is a bad message."""
    good = Register(manager_id="m", workers=1, capacity=1,
                    hardware=NodeHardware(hostname="n", workers=[WorkerHardware(0, "0-1", "0")]))
    assert unpack(pack(Kind.REGISTER, good)).header.hardware.workers[0].cpus == "0-1"
    bad = msgspec.to_builtins(good)
    bad["hardware"]["cpu_model"] = "x" * 100_000
    with pytest.raises(ProtocolError, match=r"REGISTER header.*\$\.hardware\.cpu_model"):
        unpack(pack(Kind.REGISTER, bad))
    bad["hardware"] = {"hostname": "n", "rootkit": True}
    with pytest.raises(ProtocolError, match="rootkit"):
        unpack(pack(Kind.REGISTER, bad))
    beat = msgspec.to_builtins(Heartbeat(t=1.0, memory_available=-5))
    with pytest.raises(ProtocolError, match="memory_available"):
        unpack(pack(Kind.HEARTBEAT, beat))


def test_the_service_refuses_a_bad_report_alone_with_its_code():
    details = {"manager_details": [
        {"manager_id": "a", "hardware": lying()},
        {"manager_id": "b", "hardware": lying(cpu_model="y" * 5000)},
        {"manager_id": "c"},
    ]}
    screen_manager_details(details)
    a, b, c = details["manager_details"]
    assert a["hardware"]["hostname"] == "n1"
    assert "hardware" not in b
    assert b["hardware_refused"]["code"] == error_codes.HARDWARE_REPORT_REFUSED
    assert "$.cpu_model" in b["hardware_refused"]["message"]
    assert len(b["hardware_refused"]["message"]) <= 512
    assert c == {"manager_id": "c"}
    odd = {"manager_details": "not a list"}
    screen_manager_details(odd)
    assert odd["manager_details"] == []


def test_cut_bounds_and_flattens():
    assert cut("a\nb\tc") == "a b c"
    assert len(cut("x" * 1000)) == 256 and cut("x" * 1000).endswith("…")


# ------------------------------------------------------------------ probes
def test_nvidia_smi_output_is_parsed_and_bounded():
    text = ("0, NVIDIA H100 80GB HBM3, GPU-1111, 81559\n"
            "garbage line\n"
            "1, Tesla V100, GPU-2222, [N/A]\n" + "2, X, GPU-3, 1\n" * 200)
    gpus = parse_nvidia_smi(text)
    assert gpus[0].name == "NVIDIA H100 80GB HBM3" and gpus[0].memory_total == 81559 * 2**20
    assert gpus[1].uuid == "GPU-2222" and gpus[1].memory_total == 0
    assert len(gpus) == 64


def test_no_nvidia_smi_is_no_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_gpus() == []


def test_a_hanging_nvidia_smi_is_cut_short(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_gpus(timeout=0.3) == []


def test_a_fake_nvidia_smi_is_read(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, Fake GPU, GPU-f00, 1024'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert [g.name for g in nvidia_gpus()] == ["Fake GPU"]
    assert node_hardware().gpus[0].uuid == "GPU-f00"


def test_the_task_functions_run_here_too(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    d = worker_hardware_details()
    assert d["accelerators"]["CUDA_VISIBLE_DEVICES"] == "7" and d["pid"] == os.getpid()
    text = run_hardware_report("laptop")
    assert "== laptop == == worker hardware ==" in text and "CUDA_VISIBLE_DEVICES: 7" in text


def test_format_bytes():
    assert format_bytes(16 * 2**30) == "16.0 GiB" and format_bytes(None) == "?"
    assert format_bytes(512) == "512 B"


def test_the_interchanges_book_keeps_the_latest_report_and_memory():
    book = HardwareBook()
    hw = NodeHardware(hostname="n", memory_available=5, workers=[WorkerHardware(0)])
    book.registered(b"m1", Register(manager_id="m1", workers=1, capacity=1, hardware=hw))
    book.beat(b"m1", Heartbeat(memory_available=9))
    book.beat(b"m2", Heartbeat(memory_available=9))  # not registered: nothing
    snap = book.annotate({"manager_details": [{"manager_id": "m1"}, {"manager_id": "m2"}]})
    assert snap["manager_details"][0]["hardware"]["memory_available"] == 9
    assert "hardware" not in snap["manager_details"][1]
    book.registered(b"m1", Register(manager_id="m1", workers=1, capacity=1))  # none now
    assert book.reports == {}


def test_report_rows_and_text():
    status = {"status": "online", "details": {"manager_details": [
        {"manager_id": "m1", "block_id": "0", "hostname": "n1", "workers": 2,
         "hardware": as_dict(NodeHardware(
             hostname="n1", cpu_model="Xeon", logical_cores=2, cpus="0-1", memory_total=2**30,
             accelerators=["0", "1"],
             workers=[WorkerHardware(0, "0", "0"), WorkerHardware(1, "", "1")]))},
        {"manager_id": "m2", "hostname": "n2",
         "hardware_refused": {"code": "HARDWARE_REPORT_REFUSED", "message": "bad"}},
    ]}}
    r = HardwareReport.from_status("e1", status)
    rows = r.workers()
    assert [(w["worker"], w["cpus"], w["pinned"], w["accelerator"]) for w in rows] == \
        [(0, "0", True, "0"), (1, "0-1", False, "1")]
    text = str(r)
    assert "worker 0: CPUs 0 (pinned), accelerator 0" in text
    assert "hardware report refused [HARDWARE_REPORT_REFUSED]: bad" in text


def test_unpinned_workers_without_accelerators_are_not_listed_but_shown():
    """A node of many plain workers reports none of them (the heartbeat stays
    small); the views still show one row per worker, bounded."""
    from endpoint.affinity import plan
    from endpoint.hardware_report import report

    hw = report(plan(128, [], list(range(128)), "none"), "", gpus=False)
    assert hw is not None and hw.workers == [] and len(msgspec.json.encode(hw)) < 2000
    status = {"status": "online", "details": {"manager_details": [
        {"manager_id": "m1", "hostname": "n1", "workers": 3,
         "hardware": as_dict(NodeHardware(hostname="n1", cpus="0-7",
                                          workers=[WorkerHardware(1, "", "GPU-z")]))},
        {"manager_id": "m2", "hostname": "n2", "workers": 10**9},  # a lying count: bounded
    ]}}
    rows = HardwareReport.from_status("e", status).workers()
    assert [(r["worker"], r["cpus"], r["pinned"], r["accelerator"]) for r in rows[:3]] == \
        [(0, "0-7", False, ""), (1, "0-7", False, "GPU-z"), (2, "0-7", False, "")]
    assert len(rows) == 3 + MAX_WORKERS


# ------------------------------------- a real interchange and manager process
@pytest.fixture
def interchange(tmp_path):
    """A real interchange (in a thread) and a real manager process asked for
    4 workers with accelerators A and B, pinned "alternating"."""
    import subprocess
    import threading

    from endpoint.interchange import Interchange
    from endpoint.launch import ManagerLaunch

    ix = Interchange("127.0.0.1", 0, lambda batch: None, heartbeat_period=0.5,
                     heartbeat_threshold=3.0, max_retries=1, poll_period=0.05,
                     key_dir=tmp_path / "ep" / "run" / "curve")
    thread = threading.Thread(target=ix.run, name="interchange", daemon=True)
    thread.start()
    launch = ManagerLaunch(addr=ix.url, workers=4, curve_keys=str(ix.keys.manager_file),
                           block_id="1", manager_id="legit", heartbeat_period=0.5,
                           heartbeat_threshold=3.0, accelerators="A,B",
                           cpu_affinity="alternating")
    with open(tmp_path / "manager.log", "wb") as log:
        proc = subprocess.Popen(launch.command(), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: b"legit" in ix.managers, 30), \
            (tmp_path / "manager.log").read_text()
        yield ix
    finally:
        ix.stop_event.set()
        thread.join(10)
        try:
            proc.wait(15)  # told to shut down by the interchange
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ix.close()


def details_of(ix, mid: str) -> dict | None:
    return next((d for d in ix.snapshot()["manager_details"] if d["manager_id"] == mid), None)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_real_managers_report_reaches_the_status_and_a_liar_is_refused(interchange):
    import zmq

    from endpoint.curve import ManagerKeys

    ix = interchange
    cpus = sorted(os.sched_getaffinity(0))
    d = details_of(ix, "legit")
    assert d is not None and d["workers"] == 2  # 4 asked, 2 accelerators: 2 workers
    hw = d["hardware"]
    assert hw["accelerators"] == ["A", "B"]
    assert [(w["worker"], w["cpus"], w["accelerator"]) for w in hw["workers"]] == \
        [(0, str(cpus[0]), "A"), (1, str(cpus[1]), "B")]
    assert hw["logical_cores"] == os.cpu_count() and hw["memory_total"] > 0
    # the available memory comes with every heartbeat
    ix.hardware.reports["legit"].memory_available = 1
    assert wait_until(lambda: (details_of(ix, "legit") or {}).get(
        "hardware", {}).get("memory_available", 1) > 1, 10)

    # a manager with the endpoint's key, lying about its hardware
    liar = zmq.Context.instance().socket(zmq.DEALER)
    liar.setsockopt(zmq.LINGER, 0)
    liar.setsockopt(zmq.IDENTITY, b"liar")
    ManagerKeys.load(ix.keys.manager_file).apply(liar)
    liar.connect(ix.url)
    try:
        before = ix.stats["bad_messages"]
        bad = msgspec.to_builtins(Register(manager_id="liar", workers=1, capacity=1))
        bad["hardware"] = lying(cpu_model="x" * 1_000_000)
        liar.send_multipart(pack(Kind.REGISTER, bad))
        assert wait_until(lambda: ix.stats["bad_messages"] > before, 20)
        assert b"liar" not in ix.managers  # refused: not registered, nothing shown
        honest = Register(manager_id="liar", workers=1, capacity=1,
                          hardware=NodeHardware(hostname="n9", cpu_model="Honest CPU"))
        liar.send_multipart(pack(Kind.REGISTER, honest))
        assert wait_until(lambda: details_of(ix, "liar"), 20)
        assert details_of(ix, "liar")["hardware"]["cpu_model"] == "Honest CPU"
        assert ix.managers.get(b"legit") is not None  # the honest manager goes on
    finally:
        liar.close(linger=0)


# ------------------------------------------------------------ real endpoint
def whoami(seconds):
    """Where this task runs: its worker's devices and CPUs (slow enough that
    two tasks at once take both workers)."""
    import time

    from funcx.sdk.hardware import worker_hardware_details

    time.sleep(seconds)
    return worker_hardware_details()


@pytest.fixture(scope="module")
def hw_ep(service):
    """An endpoint with two fake accelerators, workers pinned one CPU each."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    from endpoint import daemon
    from endpoint.config_file import write_template
    from endpoint.paths import EndpointDir

    ep = EndpointDir(ENDPOINT)
    write_template(ep.config_file, ENDPOINT, workers=0)
    text = ep.config_file.read_text()  # the template's lines, set
    for line, value in (("available_accelerators=None,", f"available_accelerators={DEVICES!r},"),
                        ('cpu_affinity="none",', "cpu_affinity='block',")):
        assert text.count(line) == 1, line
        text = text.replace(line, value)
    ep.config_file.write_text(text)
    eid = daemon.start(ENDPOINT)
    yield eid
    daemon.stop(ENDPOINT)


def reported(fxc, eid) -> HardwareReport | None:
    """The endpoint's hardware once its manager has reported both workers."""
    r = fxc.get_worker_hardware_details(eid)
    return r if len(r.workers()) == 2 else None


def test_each_task_sees_exactly_its_workers_device_and_cpu(fxc, hw_ep):
    from funcx import FuncXExecutor

    cpus = sorted(os.sched_getaffinity(0))
    with FuncXExecutor(endpoint_id=hw_ep, client=fxc) as ex:
        seen = [f.result(timeout=120) for f in [ex.submit(whoami, 1.5) for _ in range(2)]]
    by_device = {d["accelerators"]["CUDA_VISIBLE_DEVICES"]: d for d in seen}
    assert sorted(by_device) == DEVICES  # two workers, one device each
    for i, device in enumerate(DEVICES):
        d = by_device[device]
        assert d["accelerators"]["ROCR_VISIBLE_DEVICES"] == device
        assert d["accelerators"]["ZE_AFFINITY_MASK"] == device
        # "block" with 2 workers: worker i runs on the i-th CPU the manager may use
        assert d["cpu_affinity"] == str(cpus[i])


def both_workers(fxc, eid) -> dict[str, dict]:
    """Two tasks at once (one per worker): what each saw, by its device."""
    from funcx import FuncXExecutor

    with FuncXExecutor(endpoint_id=eid, client=fxc) as ex:
        seen = [f.result(timeout=120) for f in [ex.submit(whoami, 1.5) for _ in range(2)]]
    return {d["accelerators"].get("CUDA_VISIBLE_DEVICES", ""): d for d in seen}


@pytest.mark.slow  # a cancel kills a worker and its replacement starts (~4 s): the slow CI step
def test_a_worker_replaced_after_a_cancel_has_its_device_back(fxc, hw_ep):
    before = both_workers(fxc, hw_ep)
    assert sorted(before) == DEVICES
    fid = fxc.register_function(whoami)
    tid = fxc.run(600, endpoint_id=hw_ep, function_id=fid)
    assert wait_until(lambda: fxc.get_task(tid).get("status") == "running", 60)
    assert fxc.cancel_task(tid)
    cpus = sorted(os.sched_getaffinity(0))

    def replaced():
        after = both_workers(fxc, hw_ep)
        if sorted(after) != DEVICES:  # both tasks on one worker: ask again
            return None
        changed = [d for d in DEVICES if after[d]["pid"] != before[d]["pid"]]
        return after if len(changed) == 1 else None
    # the replacement has the killed worker's device (else a device goes missing)
    after = wait_until(replaced, 60)
    assert after is not None, "the cancelled task's worker was not replaced on its device"
    for i, device in enumerate(DEVICES):
        assert after[device]["cpu_affinity"] == str(cpus[i])


def test_the_sdk_reports_each_workers_hardware(fxc, hw_ep):
    r = wait_until(lambda: reported(fxc, hw_ep), 60)
    assert r is not None, "the endpoint's manager never reported its hardware"
    cpus = sorted(os.sched_getaffinity(0))
    rows = r.workers()
    assert [(w["worker"], w["cpus"], w["pinned"], w["accelerator"]) for w in rows] == \
        [(0, str(cpus[0]), True, "GPU-a"), (1, str(cpus[1]), True, "GPU-b")]
    assert rows[0]["logical_cores"] == os.cpu_count() and rows[0]["memory_total"] > 0
    assert rows[0]["cpu_model"]
    hw = r["managers"][0]["hardware"]
    assert hw["accelerators"] == DEVICES and not hw.get("problems")
    assert r["status"] == "online" and "GPU-b" in str(r)


def test_the_executor_runs_the_report_on_a_worker_as_globus_compute_does(fxc, hw_ep):
    from funcx import FuncXExecutor

    with FuncXExecutor(endpoint_id=hw_ep, client=fxc) as ex:
        text = ex.get_worker_hardware_details()
    assert "== funcX endpoint worker == == worker hardware ==" in text
    assert "logical cores: " in text and "CPU affinity: " in text
    assert "CUDA_VISIBLE_DEVICES: GPU-" in text  # the worker's own device


def test_funcx_endpoint_show_has_a_hardware_section(fxc, hw_ep):
    from typer.testing import CliRunner

    from funcx_cli.main import app

    assert wait_until(lambda: reported(fxc, hw_ep), 60)
    runner = CliRunner(env={"COLUMNS": "200"})
    out = runner.invoke(app, ["endpoint", "show", ENDPOINT, "--format", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    workers = doc["hardware"][0]["hardware"]["workers"]
    assert [w["accelerator"] for w in workers] == DEVICES
    out = runner.invoke(app, ["endpoint", "show", ENDPOINT])
    assert out.exit_code == 0, out.output
    assert "logical cores" in out.output and "GPU-a" in out.output
    assert "(pinned)" in out.output and "Workers" in out.output


def test_the_endpoint_panel_shows_the_workers_hardware(fxc, hw_ep):
    from jupyter_ext.widgets import EndpointPanel

    assert wait_until(lambda: reported(fxc, hw_ep), 60)
    panel = EndpointPanel(fxc)
    mine = [r for r in panel.hardware if r["endpoint"] == ENDPOINT]
    assert [r["accelerator"] for r in mine] == DEVICES
    assert "Workers' hardware" in panel.hardware_table.value
    assert "GPU-b" in panel.hardware_table.value and "pinned" in panel.hardware_table.value


def test_the_status_api_refuses_a_lying_agents_hardware(http, redis_client):
    """An agent writes its status itself: what it says of its managers' hardware
    is checked when the service reads it."""
    r = http.post(f"{http.base_url}/v3/endpoints",
                  json={"endpoint_name": f"liar-{uuid.uuid4().hex[:6]}"})
    assert r.status_code == 200, r.text
    eid = r.json()["endpoint_id"]
    details = {"managers": 1, "manager_details": [
        {"manager_id": "m1", "hostname": "n", "workers": 1,
         "hardware": lying(cpu_model="z" * 50_000)}]}
    redis_client.hset(keys.ep_status(eid), mapping={"heartbeat_t": "1",
                                                    "details": json.dumps(details)})
    redis_client.expire(keys.ep_status(eid), 60)
    st = http.get(f"{http.base_url}/v3/endpoints/{eid}/status").json()
    m = st["details"]["manager_details"][0]
    assert "hardware" not in m
    assert m["hardware_refused"]["code"] == "HARDWARE_REPORT_REFUSED"
    assert "z" * 600 not in json.dumps(st)  # not echoed back whole
    http.delete(f"{http.base_url}/v3/endpoints/{eid}")
