"""`seats-analysis probe` and `seats-analysis sweep` on the organism under `accelerate launch` with two CPU processes
give the results of one process; a launch that starts fewer processes than it was asked for stops and says so."""
import json
import socket
import sys
from pathlib import Path

import pandas as pd
import xarray as xr

import launching
from launching import TWO_PROCESSES, launch, run

ITEMS = 5
PROBE = ["probe", "--model", "organism", "--items", str(ITEMS), "--quiet", "--cpu"]
SWEEP = ["sweep", "--model", "organism", "--benchmarks", "organism", "--methods", "full,seats", "--ratios", "R10",
         "--limit", str(ITEMS), "--max-new-tokens", "2", "--quiet", "--cpu"]
TIMINGS = ("prefill_seconds", "generate_seconds", "latency")


def two_and_one(args: list[str], out: Path) -> tuple[Path, Path]:
    "Run `seats-analysis ARGS --out ...` with two processes under accelerate launch and as one plain process."
    two, one = out / "two", out / "one"
    done = launch(TWO_PROCESSES, ["-m", "seats_analysis", *args, "--out", str(two)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es) on cpu" in done.stderr, done.stderr[-3000:]
    done = run([sys.executable, "-m", "seats_analysis", *args, "--out", str(one)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 process(es) on cpu" in done.stderr, done.stderr[-3000:]
    return two, one


def untimed(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in path.read_text().splitlines()]


def test_probe_two_processes_equal_one(tmp_path):
    two, one = two_and_one(PROBE, tmp_path)
    assert sorted(p.name for p in two.glob("part-*.jsonl")) == ["part-00000.jsonl", "part-00001.jsonl"]
    with xr.open_dataset(two / "probe.nc") as merged, xr.open_dataset(one / "probe.nc") as single:
        xr.testing.assert_identical(merged.load(), single.load())
        assert merged.sizes["sample"] == ITEMS and (merged.error == "").all()


def test_sweep_two_processes_equal_one(tmp_path):
    two, one = two_and_one(SWEEP, tmp_path)
    files = sorted(p.relative_to(one) for p in one.rglob("*.jsonl"))
    assert [str(f) for f in files] == ["full/vr1-ar1/organism.jsonl", "seats/vr0.06-ar0.35/organism.jsonl"]
    assert sorted(p.relative_to(two) for p in two.rglob("*.jsonl")) == files  # the part files were merged away
    for file in files:
        rows = untimed(two / file)
        assert rows == untimed(one / file) and len(rows) == ITEMS
        assert all(row["error"] is None for row in rows)
    summary = [pd.read_csv(folder / "summary.csv").drop(columns="prefill_seconds") for folder in (two, one)]
    pd.testing.assert_frame_equal(*summary)


def test_launch_with_fewer_processes_than_asked_stops(tmp_path):
    done = launch(("--cpu", "--num_processes", "2"), ["-m", "seats_analysis", *PROBE, "--out", str(tmp_path / "probe")])
    assert done.returncode != 0
    assert "asked for 2 processes but started 1" in done.stderr and "--multi_gpu" in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "probe").exists()  # stopped before any work


RANK_SCRIPT = """import os, pathlib, sys
runs = pathlib.Path(sys.argv[1], "runs-" + os.environ["RANK"])  # one x per start of this rank
runs.write_text((runs.read_text() if runs.exists() else "") + "x")
if sys.argv[2] == "port-taken" and runs.read_text() == "x":
    sys.exit("the store could not bind its port: EADDRINUSE")  # as torch says when a port is taken under it
if sys.argv[2] == "fails":
    sys.exit("another error")
"""


def test_launch_survives_a_taken_port(tmp_path, monkeypatch):
    "A port taken before the launch binds it (another test launching at the same time) costs a new start, no failure."
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    with socket.socket() as taken:  # taken before the launch: accelerate moves elsewhere, or the launch starts again
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1], launching.free_port(), launching.free_port()])
        monkeypatch.setattr(launching, "free_port", lambda: next(ports))
        done = launch(TWO_PROCESSES, [str(script), str(tmp_path), "runs"])
    monkeypatch.undo()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # taken while binding: started again, succeeds on the second start (or a third, if the new port was taken too by
    # another test launching at the same time); another error: one start, and the failure is reported
    for case, status, starts in (("port-taken", 0, ("xx", "xxx")), ("fails", 1, ("x",))):
        folder = tmp_path / case
        folder.mkdir()
        done = launch(TWO_PROCESSES, [str(script), str(folder), case])
        assert done.returncode != 0 if status else done.returncode == 0, done.stderr[-3000:]
        assert (folder / "runs-0").read_text() in starts, done.stderr[-3000:]
