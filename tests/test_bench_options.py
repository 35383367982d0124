"""The benchmark suite's command line and the pure parts of its new figures
(scaling by workers, aggregate over endpoints, large payloads), without
starting a service, an endpoint or a peer.  Numbers are never asserted."""
from __future__ import annotations

import pytest

from benchmarks import aggregate as agg
from benchmarks import harness as h
from benchmarks import large_payload as lp
from benchmarks import options
from benchmarks import scaling as sc
from benchmarks.__main__ import parse
from benchmarks.fabric import BENCH_ENV, LARGE_LIMIT, limits_for

MIB = 1024 * 1024


def refused(capsys, *argv: str) -> str:
    """Parse ``run`` with ``argv``; it must exit 2; return its message."""
    with pytest.raises(SystemExit) as exc:
        parse(["run", *argv])
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("value, says", [
    ("1,x", "'x' is not a whole number"),
    ("0", "0 is out of range (1 to 1024)"),
    ("2,-1", "-1 is out of range"),
    ("1.5", "'1.5' is not a whole number"),
    (",", "empty: give a comma-separated list"),
])
def test_a_bad_worker_list_is_refused_with_its_item_named(capsys, value, says):
    err = refused(capsys, "--workers", value)
    assert "argument --workers:" in err and says in err, err


@pytest.mark.parametrize("argv, says", [
    (("--endpoints", "1,two"), "argument --endpoints: 'two' is not a whole number"),
    (("--endpoints", "65"), "argument --endpoints: 65 is out of range (1 to 64)"),
    (("--agg-workers", "2,3"), "argument --agg-workers: '2,3': give one whole number"),
    (("--agg-tasks", "0"), "argument --agg-tasks: 0 is out of range"),
    (("--payload-mib", "1,10,lots"), "argument --payload-mib: 'lots' is not a whole number"),
    (("--payload-mib", "4096"), "argument --payload-mib: 4096 is out of range (1 to 1024)"),
])
def test_the_other_new_options_refuse_bad_values(capsys, argv, says):
    assert says in refused(capsys, *argv)


def test_an_unknown_figure_is_refused_and_the_choices_listed(capsys):
    err = refused(capsys, "--only", "throughput,scalling")
    assert "unknown figure(s) scalling in --only" in err
    for name in ("scaling", "aggregate", "large-payload"):
        assert name in err


def test_only_takes_the_new_figure_names():
    a = parse(["run", "--only", "scaling, aggregate,large-payload"])
    assert a.only == {"scaling", "aggregate", "large-payload"}
    assert parse(["run"]).only == set(options.FIGURES)


@pytest.mark.parametrize("cores, want", [
    (1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8]),
    (16, [1, 2, 4, 8, 16]), (14, [1, 2, 4, 8, 14]), (None, [1]),
])
def test_default_worker_counts_are_powers_of_two_and_the_core_count(cores, want):
    assert options.default_workers(cores) == want


def test_the_defaults_follow_this_machines_core_count(monkeypatch):
    monkeypatch.setattr(options.os, "cpu_count", lambda: 16)
    assert parse(["run"]).plan.workers == [1, 2, 4, 8, 16]
    monkeypatch.setattr(options.os, "cpu_count", lambda: 2)
    assert parse(["run", "--quick"]).plan.workers == [1, 2]


def test_full_and_quick_sizes_and_explicit_values_win():
    full, quick = parse(["run"]).plan, parse(["run", "--quick"]).plan
    assert (full.scaling_tasks, full.endpoints, full.agg_workers, full.agg_tasks,
            full.payload_mib) == (10_000, [1, 2, 4], 2, 10_000, [1, 10, 100])
    assert (quick.scaling_tasks, quick.endpoints, quick.agg_workers, quick.agg_tasks,
            quick.payload_mib) == (2_000, [1, 2], 2, 2_000, [1, 10])
    mine = parse(["run", "--quick", "--workers", "4,1,4", "--endpoints", "3", "--agg-workers",
                  "5", "--agg-tasks", "700", "--payload-mib", "100,1"]).plan
    assert (mine.workers, mine.endpoints, mine.agg_workers, mine.agg_tasks,
            mine.payload_mib) == ([1, 4], [3], 5, 700, [1, 100])


def test_calls_per_p50_are_five_up_to_10_mib_three_above_and_with_quick():
    plan = parse(["run"]).plan
    assert [plan.calls(m, quick=False) for m in (1, 10, 11, 100)] == [5, 5, 3, 3]
    assert [plan.calls(m, quick=True) for m in (1, 10, 100)] == [3, 3, 3]


def test_the_bench_service_accepts_the_100_mib_array():
    assert int(BENCH_ENV["FUNCX_MAX_PAYLOAD_BYTES"]) >= 128 * MIB
    assert int(BENCH_ENV["FUNCX_MAX_RESULT_BYTES"]) >= 128 * MIB
    assert limits_for(100)["FUNCX_MAX_PAYLOAD_BYTES"] == str(LARGE_LIMIT)
    bigger = limits_for(500)  # --payload-mib 500 raises the limits with it
    assert int(bigger["FUNCX_MAX_PAYLOAD_BYTES"]) > 500 * MIB
    assert bigger["FUNCX_MAX_RESULT_BYTES"] == bigger["FUNCX_MAX_PAYLOAD_BYTES"]
    # results are kept a day after their fetch: Redis's bound grows past 170 MiB
    assert "FUNCX_REDIS_MAXMEMORY" not in limits_for(100)
    assert bigger["FUNCX_REDIS_MAXMEMORY"] == f"{4096 + 12 * 516}mb"


def test_aggregate_rate_is_all_tasks_over_first_start_to_last_end():
    spans = [agg.Span(0, 10.0, 12.0), agg.Span(1, 11.0, 14.0)]
    assert agg.aggregate_rate(spans, 1000) == pytest.approx(2000 / 4.0)
    assert agg.client_rates(spans, 1000) == pytest.approx([500.0, 1000 / 3.0])


def test_service_cpu_per_task_by_component():
    before = {"web": 1.0, "ingesters": 0.5, "redis": 2.0}
    after = {"web": 1.2, "ingesters": 0.55, "redis": 2.02, "other": 0.01, "new": 0.0}
    assert agg.cpu_per_task(before, after, 1000) == \
        "service CPU µs/task 280 (web 200, ingesters 50, redis 20)"


def test_a_scaling_figure_per_worker_count_notes_funcx_over_parsl():
    t = h.Table()
    t.add(sc.figure(4, 100), "funcX (FuncXExecutor, via service)", [3000, 3000], "tasks/s",
          ref=True)
    t.add(sc.figure(4, 100), "Parsl HTEX (direct)", [1000, 1500, 2000], "tasks/s")
    t.add(sc.figure(1, 100), "funcX (FuncXExecutor, via service)", [500], "tasks/s", ref=True)
    sc.annotate(t, [1, 4], 100)
    fx4 = t.rows[0]
    assert fx4.note == "333 µs/task; funcX / Parsl 2.00"
    assert t.rows[2].note == "2,000 µs/task"  # no Parsl row at 1 worker: no ratio
    assert t.ratio(t.rows[1]) == "2.00"
    assert sc.figure(1, 2_000) == "8 scaling: 1 worker (2,000 no-ops)"
    assert sc.figure(16, 10_000) == "8 scaling: 16 workers (10,000 no-ops)"


def test_scaling_rates_refuse_wrong_results():
    assert len(sc.rates(lambda n: list(range(n)), 50, 2)) == 2
    with pytest.raises(AssertionError, match="wrong results"):
        sc.rates(lambda n: list(range(n))[::-1], 50, 1)


def test_a_large_payload_result_must_equal_the_array_sent():
    np = pytest.importorskip("numpy")
    arr = lp.make_array(1)
    assert arr.dtype == np.uint8 and arr.nbytes == MIB
    lp.check(arr, arr.copy())
    wrong = arr.copy()
    wrong[12345] ^= 1
    with pytest.raises(AssertionError, match="differs"):
        lp.check(arr, wrong)
    with pytest.raises(AssertionError, match="differs"):
        lp.check(arr, arr[:-1])
    with pytest.raises(AssertionError, match="is a bytes"):
        lp.check(arr, arr.tobytes())


def test_a_wrong_large_payload_result_fails_its_row_untimed():
    pytest.importorskip("numpy")
    t = h.Table()
    lp.measure(t, "liar", lambda arr: arr[::-1].copy(), [1], lambda m: 3, 1)
    [row] = t.rows
    assert row.values == [] and "differs from the array sent" in row.note
    lp.measure(t, "honest", lambda arr: arr.copy(), [1], lambda m: 3, 2)
    assert len(t.rows[1].values) == 2 and t.rows[1].figure == lp.figure(1, 3)
