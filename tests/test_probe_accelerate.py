"""Data-parallel probing: two processes (torch.distributed on CPU, through accelerate) give the one-process table.

Run as a script, this file is the worker that every process of the two-process run executes.
"""
import faulthandler
import json
import os
import signal
import sys
import traceback
from pathlib import Path

import torch
import xarray as xr

from seats_analysis.probe import ProbeSample, merge_parts, option_ids, probe
from seats_analysis.stand_ins import make_inputs, offline_processor, synthetic_clip, tiny_thinker

from launching import TWO_PROCESSES, launch

NUM_SAMPLES = 5
QUESTION = "What colour is the square? A. red B. green C. blue D. white Answer with the letter."


def make_samples() -> list[ProbeSample]:
    "Five labelled 2-s clips (built lazily, as a long run would)."
    processor = offline_processor()
    letters = option_ids(processor.tokenizer)
    def build(seed):
        return lambda: make_inputs(processor, QUESTION, synthetic_clip(2.0, seed=seed))
    return [ProbeSample(f"clip{i}", build(i), letters, answer=i % 4) for i in range(NUM_SAMPLES)]


def worker(path: str):
    "One process of the data-parallel run: probe its share of the samples into `path`."
    torch.set_num_threads(1)
    table = probe(tiny_thinker("qwen2_5", num_layers=3), make_samples(), path=path, progress=False)
    (Path(path) / f"returned-{os.environ['RANK']}.json").write_text(json.dumps(list(table.sample.values)))
    torch.distributed.destroy_process_group()


def test_two_processes_equal_one_process(tmp_path):
    path = tmp_path / "probe"
    done = launch(TWO_PROCESSES, [__file__, str(path)], timeout=300)
    failures = "".join(f"{f.name}:\n{f.read_text()}" for f in sorted(tmp_path.glob("*-rank*.txt")) if f.stat().st_size)
    assert done.returncode == 0, failures + done.stdout[-3000:] + done.stderr[-3000:]  # each rank's own traceback

    ids = [f"clip{i}" for i in range(NUM_SAMPLES)]
    for rank in (0, 1):  # rank r took samples r, r + 2, ... and wrote only its own part
        lines = (path / f"part-{rank:05d}.jsonl").read_text().splitlines()
        assert [json.loads(line)["sample"] for line in lines] == ids[rank::2]
        assert json.loads((path / f"returned-{rank}.json").read_text()) == ids  # every rank returns the merged table

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers, so that the float arithmetic is the same
    try:
        single = probe(tiny_thinker("qwen2_5", num_layers=3), make_samples(), progress=False)
    finally:
        torch.set_num_threads(threads)
    merged = merge_parts(path)
    xr.testing.assert_identical(merged, single)
    with xr.open_dataset(path / "probe.nc") as stored:  # written by the main process
        xr.testing.assert_identical(stored.load(), single)
    assert set(merged.error.values) == {""}
    assert merged.accuracy.notnull().all()


def test_a_failed_rank_leaves_its_traceback(tmp_path):
    done = launch(TWO_PROCESSES, [__file__, str(tmp_path / "probe"), "--fail-rank", "1"], timeout=300)
    assert done.returncode != 0
    failed = (tmp_path / "failed-rank1.txt").read_text()
    assert "RuntimeError: rank 1 fails here, as asked" in failed and "Traceback" in failed, failed


if __name__ == "__main__":
    # Beside the folder, so that the test can show which rank failed and why: an exception's traceback, or where
    # the rank was when a signal ended it (a crash, or the launcher stopping it after another rank failed).
    rank = os.environ["RANK"]
    stopped = open(Path(sys.argv[1]).with_name(f"stopped-rank{rank}.txt"), "w")
    faulthandler.enable(stopped)
    faulthandler.register(signal.SIGTERM, stopped, chain=True)
    try:
        if sys.argv[2:] == ["--fail-rank", rank]:
            raise RuntimeError(f"rank {rank} fails here, as asked")
        worker(sys.argv[1])
    except BaseException:
        Path(sys.argv[1]).with_name(f"failed-rank{rank}.txt").write_text(traceback.format_exc())
        raise
