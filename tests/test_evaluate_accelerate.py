"""Data-parallel evaluation under `accelerate launch` (two CPU processes) matches one process, row for row."""
import json
import sys
import textwrap
from pathlib import Path

import pytest

from launching import TWO_PROCESSES, launch

# The run both settings share: a four-layer thinker, the offline processor and SEATS at R10 on a Video-MME fixture.
RUNNER = textwrap.dedent('''
    import json
    import sys
    import warnings
    from pathlib import Path

    import datasets
    import torch

    from seats_analysis.benchmarks import load_benchmark
    from seats_analysis.evaluate import evaluate
    from seats_analysis.compat import audio_rates
    from seats_analysis.schedule import Schedule
    from seats_analysis.stand_ins import offline_processor, tiny_thinker

    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore")

    SCHEDULE = Schedule(model_name="tiny-qwen2_5", num_layers=4, middle_block_layer=2, late_block_layer=4,
                        drop_layers=[1, 2], provenance={"source": "probe", "details": "hand-made for the tests"},
                        **audio_rates("qwen2_5"))


    def run(fixture_dir, results_path, log_path=None, **kwargs):
        thinker, processor = tiny_thinker(num_layers=4), offline_processor()
        records = load_benchmark("videomme", Path(fixture_dir) / "annotations", Path(fixture_dir) / "media").records
        ran = []
        scores = evaluate(thinker, processor, "videomme", "seats", 0.06, 0.35, records=records,
                          results_path=results_path, schedule=SCHEDULE, max_new_tokens=4, progress=False,
                          on_sample=lambda row: ran.append(row["key"]), **kwargs)
        if log_path is not None:
            Path(log_path).write_text(json.dumps({"ran": ran, "scores": scores}))
        return scores


    if __name__ == "__main__":
        from accelerate import PartialState
        fixture_dir, results_path, log_dir = sys.argv[1:4]
        rank = PartialState(cpu=True).process_index
        run(fixture_dir, results_path, Path(log_dir) / f"rank{rank}.json")
''')

TIMINGS = ("prefill_seconds", "generate_seconds", "latency")


def untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMINGS}


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runner")
    (folder / "dp_runner.py").write_text(RUNNER)
    sys.path.insert(0, str(folder))
    import dp_runner
    yield folder / "dp_runner.py", dp_runner
    sys.path.remove(str(folder))


def test_two_processes_match_one(tmp_path, runner):
    script, dp_runner = runner
    import torch
    from seats_analysis.testing import make_fixture
    torch.set_num_threads(1)
    fixture = make_fixture("videomme", tmp_path / "data", n_records=5, seed=11)
    fixture_dir = fixture.annotations.parent

    single = tmp_path / "single.jsonl"
    one = dp_runner.run(fixture_dir, single, rank=0, world_size=1)

    # the parallel run starts from a file an earlier single-process run left with two rows
    parallel = tmp_path / "parallel.jsonl"
    dp_runner.run(fixture_dir, parallel, rank=0, world_size=1, limit=2)
    logs = tmp_path / "logs"
    logs.mkdir()
    done = launch(TWO_PROCESSES, [str(script), str(fixture_dir), str(parallel), str(logs)], timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # each rank ran its own records (r, r + 2, ...) that the file did not hold yet; no part file is left
    keys = [row["key"] for row in read_rows(single)]
    ranks = {r: json.loads((logs / f"rank{r}.json").read_text()) for r in (0, 1)}
    assert ranks[0]["ran"] == [k for i, k in enumerate(keys) if i % 2 == 0 and i >= 2]
    assert ranks[1]["ran"] == [k for i, k in enumerate(keys) if i % 2 == 1 and i >= 2]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("parallel")) == ["parallel.jsonl"]

    # the merged file holds the same rows, in the same order, as the single-process file
    assert [untimed(r) for r in read_rows(parallel)] == [untimed(r) for r in read_rows(single)]
    rows = read_rows(parallel)
    assert all(row["error"] is None and row["retention"]["video"] < 1 for row in rows)
    timed = ("prefill_seconds", "selection_seconds")  # measured, so different in every run
    timeless = {k: v for k, v in one.items() if k not in timed}
    for r in (0, 1):
        assert {k: v for k, v in ranks[r]["scores"].items() if k not in timed} == timeless
