"""run.sh's choices before it starts: threads from fake load readings, the wall-time estimate,
and the busy-machine warning. Nothing here times anything."""

import importlib

import pytest

from infkit.bench import cli, pipeline, plan, report

bench_main = importlib.import_module("infkit.bench.main")  # the package exports main() by this name


@pytest.mark.parametrize(
    "n_cores, others, threads, says",
    [
        (2, 0.0, 2, "one per core"),
        (2, 0.2, 2, "one per core"),  # a little background work leaves a core free
        (2, 0.6, 1, "one per free core"),
        (2, 1.1, 1, "one per free core"),
        (2, 1.5, 1, "busy"),
        (2, 2.0, 1, "busy"),  # two CPU-bound neighbours on two cores
        (2, 3.7, 1, "busy"),  # more runnable threads than cores (a load average)
        (8, 2.0, 6, "one per free core"),
        (1, 0.0, 1, "one per core"),
        (1, 0.9, 1, "busy"),
    ],
)
def test_threads_follow_the_free_cores(n_cores, others, threads, says):
    got, why = plan.choose_threads(n_cores, others)
    assert got == threads and says in why, why


def test_threads_without_a_reading_are_one_per_core():
    got, why = plan.choose_threads(4, None)
    assert got == 4 and "cannot be measured" in why


def test_threads_option_wins_over_the_reading(monkeypatch):
    monkeypatch.setattr(plan, "others_cores_now", lambda: 1.9)
    config = cli.parse(["--threads", "2"])
    threads, why, others = bench_main.pick_threads(config)
    assert (threads, others) == (2, 1.9) and "--threads" in why
    threads, why, _ = bench_main.pick_threads(cli.parse([]))
    assert threads == 1 and "busy" in why


def test_the_default_is_estimated_at_the_reference_time():
    default = cli.parse([])
    assert plan.estimate_seconds(default, 2, default) == pytest.approx(plan.REFERENCE_SECONDS)
    # one thread: at most twice as long; a smaller workload: shorter
    assert plan.estimate_seconds(default, 1, default) == pytest.approx(2 * plan.REFERENCE_SECONDS)
    smaller = cli.parse(["--skip", "throughput"])
    assert plan.estimate_seconds(smaller, 2, default) < plan.REFERENCE_SECONDS / 2
    shorter = cli.parse(["--new-tokens", "32", "--latency-samples", "1"])
    assert plan.estimate_seconds(shorter, 2, default) < 0.7 * plan.REFERENCE_SECONDS


def test_no_estimate_where_the_reference_says_nothing():
    default = cli.parse([])
    for argv in (["--pair", "tiny"], ["--debug"], ["--device", "cuda"]):
        assert plan.estimate_seconds(cli.parse(argv), 2, default) is None
    assert "none for this pair" in plan.estimate_line(None)
    assert "about 4 min" in plan.estimate_line(228.0)


def test_naive_dominates_the_estimate_as_in_the_reference():
    """The naive baseline is the run's slowest call by far (KV is 10-14x faster at batch 1)."""
    naive = plan._call_units("naive", 1, 384, 64, 3)
    kv = plan._call_units("kv", 1, 384, 64, 3)
    assert 8 < naive / kv < 20


@pytest.mark.parametrize("others, warned", [(None, False), (0.1, False), (0.5, True), (2.0, True)])
def test_busy_warning_says_what_to_do(others, warned):
    warning = plan.busy_warning(others, 2)
    assert (warning is not None) == warned
    if warned:
        assert "--threads 1" in warning and "--skip throughput" in warning and "--new-tokens" in warning


def test_the_closing_warning_gives_the_same_advice():
    measured = pipeline.Measured(tests={}, cores=2, load_before=None)
    busy = pipeline.Analysis(figures={}, reasons={"latency": ["other programs used 90% of the CPU"]})
    lines = report.machine_lines(measured, busy)
    assert any(plan.BUSY_ADVICE in line for line in lines)
    assert not any("quiet machine" in line for line in lines)
    quiet = report.machine_lines(measured, pipeline.Analysis(figures={}, reasons={"latency": []}))
    assert not any(plan.BUSY_ADVICE in line for line in quiet)


def test_reference_figures_only_beside_the_reference_run():
    default = cli.parse([])
    for w in default.workloads:
        assert plan.reference_applies(default, w)
    shorter = cli.parse(["--new-tokens", "32"])
    assert not plan.reference_applies(shorter, shorter.workload("throughput"))
    assert plan.reference_applies(shorter, shorter.workload("latency"))  # its own workload is unchanged
    tiny = cli.parse(["--pair", "tiny"])
    assert not any(plan.reference_applies(tiny, w) for w in tiny.workloads)


def test_figure_lines_say_reference_never_goal():
    from infkit.bench import analyse

    with_ref = analyse.Figure(2.6, 2.5, 2.7, test="latency", batch=1, reference=(2.50, 2.65))
    line = report.figure_line("speculative vs KV", with_ref)
    assert "kit's CPU reference 2.50-2.65x" in line and "goal" not in line
    assert "reference" not in report.figure_line("speculative vs KV", analyse.Figure(2.6, 2.5, 2.7))
    assert "not a goal" in report.REFERENCE_NOTE and "autograder" in report.REFERENCE_NOTE


def test_the_estimate_needs_no_model():
    """Printed before the models load: from the command line and the pair's shape alone."""
    assert bench_main._estimate(cli.parse([]), 2) == pytest.approx(plan.REFERENCE_SECONDS)
    assert bench_main._estimate(cli.parse(["--pair", "tiny"]), 2) is None
    assert bench_main._estimate(cli.parse(["--prompt-len", "1000"]), 2) is None  # does not fit


def test_a_busy_machine_runs_a_smaller_throughput_test():
    """Busy, with the threads left to run.sh: the throughput test's generation shrinks, the
    latency test (the speculative figures) is untouched, and the line says how to keep the
    default. Any explicit choice keeps the workload as asked."""
    default = cli.parse([])
    quiet, line = plan.busy_workload(default, busy=False)
    assert quiet == default and line is None
    smaller, line = plan.busy_workload(default, busy=True)
    assert smaller.workload("throughput").new_tokens == plan.BUSY_NEW_TOKENS
    assert smaller.workload("latency") == default.workload("latency")
    assert "--full-workload" in line
    assert plan.units(smaller) < 0.7 * plan.units(default)
    for argv in (
        ["--full-workload"],
        ["--threads", "1"],
        ["--new-tokens", "48"],
        ["--pair", "tiny", "--threads", "2"],
    ):
        config = cli.parse(argv)
        assert plan.busy_workload(config, busy=True) == (config, None), argv
    assert plan.busy_workload(cli.parse(["--skip", "throughput"]), busy=True)[1] is None
