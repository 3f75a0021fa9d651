"""`seats-analysis probe` and `seats-analysis sweep` on the organism under `accelerate launch` with two CPU processes
give the results of one process; a launch that starts fewer processes than it was asked for stops and says so."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import xarray as xr

ITEMS = 5
PROBE = ["probe", "--model", "organism", "--items", str(ITEMS), "--quiet", "--cpu"]
SWEEP = ["sweep", "--model", "organism", "--benchmarks", "organism", "--methods", "full,seats", "--ratios", "R10",
         "--limit", str(ITEMS), "--max-new-tokens", "2", "--quiet", "--cpu"]
TIMINGS = ("prefill_seconds", "generate_seconds", "latency")
ENV = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(*options: str) -> list[str]:
    "`accelerate launch OPTIONS -m seats_analysis`, as a command line (arguments follow)."
    return [sys.executable, "-m", "accelerate.commands.launch", *options, "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
            "-m", "seats_analysis"]


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=480)


def two_and_one(args: list[str], out: Path) -> tuple[Path, Path]:
    "Run `seats-analysis ARGS --out ...` with two processes under accelerate launch and as one plain process."
    two, one = out / "two", out / "one"
    done = run(accelerate_launch("--multi_gpu", "--num_processes", "2") + args + ["--out", str(two)])
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
    done = run(accelerate_launch("--cpu", "--num_processes", "2") + PROBE + ["--out", str(tmp_path / "probe")])
    assert done.returncode != 0
    assert "asked for 2 processes but started 1" in done.stderr and "--multi_gpu" in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "probe").exists()  # stopped before any work
