"""The commands refuse what they cannot do before doing any of it: a usage line and exit status 2, no traceback, no
memory error, and nothing of the user's overwritten.

Most checks run a command in this process through its `main(argv)`; the ones about exit status and tracebacks run
it as a separate process. Where a check would otherwise start a real run, the run is stood in for: the check is that
the command stops before it.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from seats_analysis import bench, cli, evaluate
from seats_analysis.evaluate import SWEEP_MARK
from seats_analysis.organism import learned_task
from seats_analysis.storage import read_jsonl

ORGANISM_SWEEP = ["sweep", "--model", "organism", "--benchmarks", "organism", "--quiet"]
READ_ONLY = Path("/sys/seats-analysis-out")  # sysfs takes no new files, whoever asks
read_only = pytest.mark.skipif(not Path("/sys").is_dir(), reason="no /sys to stand for a read-only place")


class Stopped(Exception):
    "Raised by a stand-in for the run a command would start."


def stopped(*args, **kwargs):
    raise Stopped


def refused(capsys, command, argv) -> str:
    "The stderr of `command(argv)`, which must stop with argparse's usage error (exit status 2)."
    with pytest.raises(SystemExit) as stop:
        command(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert "usage:" in err and "Traceback" not in err, err
    return err


# sweep: the user's folder is left alone

def users_folder(tmp_path) -> Path:
    "A folder of one's own: notes in summary.md beside a folder named like a sweep's cell."
    folder = tmp_path / "myexp"
    (folder / "notes" / "vr1-ar1").mkdir(parents=True)
    (folder / "notes" / "vr1-ar1" / "plot.png").write_bytes(b"mine")
    (folder / "summary.md").write_text("my notes")
    return folder


def test_sweep_leaves_a_users_summary_untouched(tmp_path, capsys, monkeypatch):
    folder = users_folder(tmp_path)
    monkeypatch.setattr(evaluate, "sweep", stopped)
    err = refused(capsys, cli.main, [*ORGANISM_SWEEP, "--out", str(folder)])
    assert "--out:" in err and "is not a sweep folder" in err, err
    assert (folder / "summary.md").read_text() == "my notes"
    assert not (folder / SWEEP_MARK).exists()


def test_sweep_out_that_cannot_be_written_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "a-file").write_text("mine")
    for out, message in ((tmp_path / "a-file", "is a file, not a folder"),
                         (tmp_path / "a-file" / "run", "a-file is a file, not a folder")):
        assert message in refused(capsys, cli.main, [*ORGANISM_SWEEP, "--out", str(out)])
    assert (tmp_path / "a-file").read_text() == "mine"


@read_only
def test_read_only_out_is_a_usage_error(capsys):
    for command, argv in ((cli.main, [*ORGANISM_SWEEP, "--out", str(READ_ONLY)]),
                          (cli.main, ["demo", "--out", str(READ_ONLY)]),
                          (bench.bench_main, ["--out", str(READ_ONLY / "prefill")])):
        assert "nothing can be written in /sys" in refused(capsys, command, argv)


def test_demo_out_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "a-file").write_text("mine")
    assert "is a file, not a folder" in refused(capsys, cli.main, ["demo", "--out", str(tmp_path / "a-file" / "run")])


def test_sweep_schedule_that_cannot_be_read_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate, "sweep", stopped)
    (tmp_path / "schedule.json").write_text("[1, 2]")
    for schedule in (tmp_path / "missing.json", tmp_path / "schedule.json"):
        err = refused(capsys, cli.main, [*ORGANISM_SWEEP, "--out", str(tmp_path / "out"), "--schedule", str(schedule)])
        assert "--schedule:" in err and str(schedule) in err, err
    assert not (tmp_path / "out").exists()


def test_sweep_option_value_refused_by_its_method_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate, "sweep", stopped)
    err = refused(capsys, cli.main, [*ORGANISM_SWEEP, "--methods", "full,omnizip", "--option", "omnizip:g=-3",
                                     "--out", str(tmp_path / "out")])
    assert "--option: method 'omnizip' refuses the options {'g': -3}" in err, err


def test_what_the_sweep_refuses_while_running_is_a_usage_error(tmp_path, capsys, monkeypatch):
    def refusing(*args, **kwargs):
        raise ValueError("the inputs of 1 stored sample changed since it was run")
    monkeypatch.setattr(evaluate, "sweep", refusing)
    err = refused(capsys, cli.main, [*ORGANISM_SWEEP, "--out", str(tmp_path / "out")])
    assert "error: the inputs of 1 stored sample changed" in err, err


def test_a_limit_beyond_the_organism_is_all_of_it(tmp_path, monkeypatch):
    asked = []

    def recording(thinker, processor, benchmarks, methods, ratios, out, records, **kwargs):
        asked.append(([record.id for record in records["organism"]], kwargs["limit"]))
        raise Stopped
    monkeypatch.setattr(evaluate, "sweep", recording)
    for limit in (["--limit", "100000"], []):
        with pytest.raises(Stopped):
            cli.main([*ORGANISM_SWEEP, *limit, "--out", str(tmp_path / "out")])
    (large, limit), (whole, _) = asked
    assert large == whole and len(whole) == learned_task().test_items and limit == 100000


# engine-demo, plan and bench: numbers within their ranges

def test_engine_demo_clip_length_is_bounded(capsys):
    err = refused(capsys, cli.main, ["engine-demo", "--seconds", "100000"])
    assert "argument --seconds: 100000 is above the 600 s maximum (allowed: 0.5 to 600 s)" in err, err


def test_plan_text_beyond_the_models_positions_is_refused(capsys):
    assert cli.main(["plan", "--text-tokens", "1000000000000"]) == 2
    captured = capsys.readouterr()
    assert "text=1000000000000 is outside [0, 32768]" in captured.err and "max_position_embeddings" in captured.err
    assert captured.out == ""  # no table
    assert cli.main(["plan", "--text-tokens", "400"]) == 0


NO_CUDA_DEVICE = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


@pytest.mark.parametrize("argv, message", [
    (["--seconds", "0.001"], "argument --seconds: 0.001 is below the 0.5 s minimum"),
    (["--threads", "100000"], "argument --threads: 100000 is above the"),
    (["--scaling-seconds", "1e9"], "argument --scaling-seconds: 1e+09 is above the 150 s maximum"),
    (["--out", ""], "argument --out: '' names no file"),
    (["--methods", ""], "argument --methods: '': give distinct names from"),
    (["--device", NO_CUDA_DEVICE], "CUDA GPU"),
])
def test_bench_refuses_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run_benchmark", stopped)
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "tables" / "prefill")]
    assert message in refused(capsys, bench.bench_main, argv)
    assert not (tmp_path / "tables").exists()


def test_run_benchmark_checks_every_argument_before_it_writes(tmp_path):
    with pytest.raises(ValueError, match=r"scaling_seconds=1000000000.0 is outside \[0.5, 150\]"):
        bench.run_benchmark(tmp_path / "tables" / "prefill", size="tiny", seconds=1, scaling_seconds=1e9,
                            keep_memory=False)
    assert not (tmp_path / "tables").exists()


# as separate processes: exit status 2 and one usage line, never a traceback

@pytest.mark.parametrize("argv", [
    ["-m", "seats_analysis.bench", "--device", NO_CUDA_DEVICE, "--out", "{tmp}/tables/prefill"],
    ["-m", "seats_analysis", "engine-demo", "--seconds", "100000"],
    ["-m", "seats_analysis", "plan", "--text-tokens", "1000000000000"],
    ["-m", "seats_analysis", *ORGANISM_SWEEP, "--out", "{tmp}/a-file"],
    ["-m", "seats_analysis", *ORGANISM_SWEEP, "--out", "{tmp}/myexp"],
], ids=["bench-device", "engine-demo-seconds", "plan-text-tokens", "sweep-out-file", "sweep-users-folder"])
def test_refusals_exit_2_without_a_traceback(argv, tmp_path):
    (tmp_path / "a-file").write_text("mine")
    users_folder(tmp_path)
    done = subprocess.run([sys.executable, *[a.format(tmp=tmp_path) for a in argv]], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "error:" in done.stderr, done.stderr[-3000:]
    assert (tmp_path / "myexp" / "summary.md").read_text() == "my notes"
    assert not (tmp_path / "tables").exists()


# what must keep holding: an interrupted sweep resumes to the rows and summary of an uninterrupted one, and a sweep
# of other methods joins it in the same folder

UNTIMED = ("prefill_seconds", "generate_seconds", "latency")


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in UNTIMED} for row in rows]


def run_sweep(out: Path, *argv, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "seats_analysis", *ORGANISM_SWEEP, "--methods", "full,seats", "--ratios", "R10",
               "--limit", "6", "--out", str(out), *argv]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kwargs)


def rows_of(out: Path) -> dict:
    return {path.relative_to(out).as_posix(): untimed(read_jsonl(path)) for path in sorted(out.rglob("*.jsonl"))}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_sweep_resumes_to_the_same_rows_and_summary(signum, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = run_sweep(whole)
    assert done.wait(timeout=600) == 0, done.stderr.read()[-3000:]
    run = run_sweep(cut)
    deadline = time.monotonic() + 600
    while not any(read_jsonl(p) for p in cut.rglob("*.jsonl")) and run.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    run.send_signal(signum)
    assert run.wait(timeout=120) != 0  # stopped half-way
    again = run_sweep(cut)
    assert again.wait(timeout=600) == 0, again.stderr.read()[-3000:]
    assert rows_of(cut) == rows_of(whole)
    summary = lambda out: pd.read_csv(out / "summary.csv").filter(regex="^(?!.*(seconds|latency))")
    pd.testing.assert_frame_equal(summary(cut), summary(whole))
    assert (cut / SWEEP_MARK).is_file()
    other = run_sweep(cut, "--methods", "random")  # later arguments win: another method into the same folder
    assert other.wait(timeout=600) == 0, other.stderr.read()[-3000:]
    assert set(pd.read_csv(cut / "summary.csv")["method"]) == {"full", "seats", "random"}
    assert rows_of(cut).items() >= rows_of(whole).items()
