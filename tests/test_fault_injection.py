"""What a long run does when things go wrong: nothing it writes is silently wrong, and nothing is lost.

Each test injects one fault a real user meets: resuming with another model or other inputs, a results path that
is not a results file, a probe folder that lost its meta file, samples that fail, two processes writing one file,
a run killed half-way, a crafted training-state file, bad command-line arguments.
"""
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from seats_analysis.benchmarks import load_benchmark
from seats_analysis.testing import make_fixture
from seats_analysis.evaluate import TooManyFailures, evaluate, sweep
from seats_analysis.organism import load_training_state
from seats_analysis.probe import probe
from seats_analysis.storage import StoreBusy, read_jsonl
from seats_analysis.compat import audio_rates
from seats_analysis.schedule import Schedule
from seats_analysis.stand_ins import make_inputs, offline_processor, synthetic_clip, tiny_thinker

SCHEDULE = Schedule(model_name="tiny-qwen2_5", num_layers=4, middle_block_layer=2, late_block_layer=4,
                    drop_layers=[1, 2], provenance={"source": "probe", "details": "hand-made for the tests"},
                    **audio_rates("qwen2_5"))
RUN = dict(method="full", schedule=SCHEDULE, max_new_tokens=2, progress=False)
TIMINGS = ("prefill_seconds", "generate_seconds", "latency")

# a separate process evaluating the Video-MME fixture into one results file, `pause` seconds after each sample
WRITER = textwrap.dedent('''
    import sys, time, warnings
    from pathlib import Path
    import torch
    from seats_analysis.benchmarks import load_benchmark
    from seats_analysis.evaluate import evaluate
    from seats_analysis.compat import audio_rates
    from seats_analysis.schedule import Schedule
    from seats_analysis.stand_ins import offline_processor, tiny_thinker
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    annotations, media, results, pause = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
    schedule = Schedule(model_name="tiny-qwen2_5", num_layers=4, middle_block_layer=2, late_block_layer=4,
                        drop_layers=[1, 2], provenance={"source": "probe", "details": "hand-made for the tests"},
                        **audio_rates("qwen2_5"))
    records = load_benchmark("videomme", annotations, media).records
    evaluate(tiny_thinker(num_layers=4), offline_processor(), "videomme", "full", records=records,
             results_path=results, schedule=schedule, max_new_tokens=2, progress=False,
             on_sample=lambda row: time.sleep(pause))
''')


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    "A four-layer thinker, its processor and four Video-MME fixture records."
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("faults")
    fixture = make_fixture("videomme", root / "data", n_records=4, seed=3)
    records = load_benchmark("videomme", fixture.annotations, fixture.media_root).records
    return tiny_thinker(num_layers=4), offline_processor(), records, fixture


def untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def writer(fixture, results: Path, pause: float) -> subprocess.Popen:
    "Start the writer process on the fixture's records."
    return subprocess.Popen([sys.executable, "-c", WRITER, str(fixture.annotations), str(fixture.media_root),
                             str(results), str(pause)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_rows(path: Path, n: int, process: subprocess.Popen, timeout: float = 300):
    "Wait until `path` holds at least `n` complete rows."
    start = time.time()
    while len(read_jsonl(path)) < n:
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.time() - start < timeout, "the writer wrote nothing in time"
        time.sleep(0.2)


def test_resume_with_other_weights_or_inputs_is_refused(setup, tmp_path):
    thinker, processor, records, _ = setup
    results = tmp_path / "run.jsonl"
    evaluate(thinker, processor, "videomme", records=records[:2], results_path=results, **RUN)
    before = results.read_bytes()
    retrained = tiny_thinker(num_layers=4)
    with torch.no_grad():
        retrained.lm_head.weight.mul_(1.01)
    with pytest.raises(ValueError, match=r"model\.weights changed"):
        evaluate(retrained, processor, "videomme", records=records[:2], results_path=results, **RUN)
    other_question = [replace(records[0], question=records[0].question + " (edited)"), records[1]]
    with pytest.raises(ValueError, match="inputs of 1 stored sample"):
        evaluate(thinker, processor, "videomme", records=other_question, results_path=results, **RUN)
    with pytest.raises(ValueError, match="schedule changed"):
        evaluate(thinker, processor, "videomme", records=records[:2], results_path=results,
                 **{**RUN, "schedule": replace(SCHEDULE, drop_layers=[1])})
    assert results.read_bytes() == before


def test_foreign_results_file_is_left_untouched(setup, tmp_path):
    thinker, processor, records, _ = setup
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"todo": "buy milk"}\n{"todo": "call Ana"')  # the last line has no newline
    before = notes.read_bytes()
    with pytest.raises(ValueError, match="is not a results file"):
        evaluate(thinker, processor, "videomme", records=records[:1], results_path=notes, **RUN)
    assert notes.read_bytes() == before


def test_probe_folder_without_meta_or_with_other_weights_is_refused(setup, tmp_path):
    thinker, processor, _, _ = setup
    samples = [make_inputs(processor, "Which colour?", synthetic_clip(1.0))]
    store = tmp_path / "probe"
    probe(thinker.eval(), samples, path=store, shard=(0, 1), progress=False)
    retrained = tiny_thinker(num_layers=4).eval()
    with torch.no_grad():
        retrained.lm_head.weight.mul_(1.01)
    with pytest.raises(ValueError, match=r"model\.weights changed"):
        probe(retrained, samples, path=store, shard=(0, 1), progress=False)
    (store / "meta.json").unlink()
    parts = {p.name: p.read_bytes() for p in store.glob("part-*")}
    with pytest.raises(ValueError, match="is not a probe folder"):
        probe(thinker, samples, path=store, shard=(0, 1), progress=False)
    assert {p.name: p.read_bytes() for p in store.glob("part-*")} == parts
    other = samples[0].copy()
    other["input_ids"] = other["input_ids"].clone()
    other["input_ids"][0, -1] = processor.tokenizer.convert_tokens_to_ids("A")
    fresh = tmp_path / "fresh"
    probe(thinker, samples, path=fresh, shard=(0, 1), progress=False)
    with pytest.raises(ValueError, match="inputs of 1 stored sample"):
        probe(thinker, [other], path=fresh, shard=(0, 1), progress=False)


def test_failed_samples_are_excluded_counted_and_retried(setup, tmp_path):
    thinker, processor, records, _ = setup
    results = tmp_path / "run.jsonl"
    lost = replace(records[1], video_path=tmp_path / "missing.mp4")
    scores = evaluate(thinker, processor, "videomme", records=[records[0], lost], results_path=results, **RUN)
    assert (scores["n"], scores["n_errors"]) == (1, 1)
    failed = read_jsonl(results)[1]
    assert failed["error"].startswith("FileNotFoundError") and failed["pred"] is None and failed["correct"] is None
    with pytest.raises(TooManyFailures, match="1 of 2 samples failed"):
        evaluate(thinker, processor, "videomme", records=[records[0], lost], results_path=results, max_errors=0,
                 **RUN)
    scores = evaluate(thinker, processor, "videomme", records=records[:2], results_path=results, retry_errors=True,
                      **RUN)
    assert (scores["n"], scores["n_errors"]) == (2, 0)


def test_failed_samples_are_counted_in_the_sweep_summaries(setup, tmp_path):
    thinker, processor, records, fixture = setup
    data = tmp_path / "data"
    shutil.copytree(fixture.annotations.parent, data)
    copied = load_benchmark("videomme", data / "annotations", data / "media").records
    copied[2].video_path.write_bytes(b"not a video")  # there, so the loader takes it; unreadable when decoded
    settings = {k: v for k, v in RUN.items() if k != "method"}
    with pytest.raises(TooManyFailures, match="1 cell"):
        sweep(thinker, processor, ["videomme"], ["full"], [], tmp_path / "out", records={"videomme": copied},
              max_errors=0, **settings)
    csv = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert (csv["n"].tolist(), csv["n_errors"].tolist()) == ([len(copied) - 1], [1])
    header, _, row = (tmp_path / "out" / "summary.md").read_text().splitlines()[:3]  # then the notes under the table
    failed = [cell.strip() for cell in header.split("|")].index("Failed")
    assert row.split("|")[failed].strip() == "1"
    shutil.copy(records[2].video_path, copied[2].video_path)  # mended: the retry answers it
    table = sweep(thinker, processor, ["videomme"], ["full"], [], tmp_path / "out", records={"videomme": copied},
                  retry_errors=True, max_errors=0, **settings)
    assert (table["n"].tolist(), table["n_errors"].tolist()) == ([len(copied)], [0])
    assert pd.read_csv(tmp_path / "out" / "summary.csv")["n_errors"].tolist() == [0]


def test_a_second_writer_is_refused_and_nothing_is_doubled(setup, tmp_path):
    thinker, processor, records, fixture = setup
    results = tmp_path / "shared.jsonl"
    first = writer(fixture, results, pause=3.0)
    try:
        wait_for_rows(results, 1, first)
        with pytest.raises(StoreBusy, match="another process is writing"):
            evaluate(thinker, processor, "videomme", records=records, results_path=results, **RUN)
    finally:
        first.wait(timeout=600)
    assert first.returncode == 0, first.stderr.read().decode()[-2000:]
    keys = [row["key"] for row in read_jsonl(results)]
    assert sorted(keys) == sorted(r.id for r in records) and len(keys) == len(set(keys))


def test_a_killed_run_resumes_without_duplicates_or_losses(setup, tmp_path):
    thinker, processor, records, fixture = setup
    results = tmp_path / "killed.jsonl"
    run = writer(fixture, results, pause=5.0)
    wait_for_rows(results, 2, run)
    run.send_signal(signal.SIGKILL)
    run.wait()
    with open(results, "a") as f:
        f.write('{"key": "half a li')  # the kill may land mid-line
    evaluate(thinker, processor, "videomme", records=records, results_path=results, **RUN)
    rows = read_jsonl(results)
    assert [row["key"] for row in rows] == [r.id for r in records]
    uninterrupted = tmp_path / "whole.jsonl"
    evaluate(thinker, processor, "videomme", records=records, results_path=uninterrupted, **RUN)
    assert untimed(rows) == untimed(read_jsonl(uninterrupted))


def test_one_unreadable_record_does_not_stop_a_sweep_when_skipping(setup, tmp_path):
    thinker, processor, records, fixture = setup
    data = tmp_path / "data" / "videomme"
    shutil.copytree(fixture.annotations.parent, data)
    next(p for p in (data / "media").rglob("*.mp4") if records[0].video_path.name == p.name).unlink()
    settings = {k: v for k, v in RUN.items() if k != "method"}
    with pytest.raises(FileNotFoundError, match=records[0].video_path.name):
        sweep(thinker, processor, ["videomme"], ["full"], [], tmp_path / "stopped", data_root=tmp_path / "data",
              **settings)
    with pytest.warns(UserWarning, match=r"left out 1 row\(s\) that could not be read"):
        table = sweep(thinker, processor, ["videomme"], ["full"], [], tmp_path / "out", data_root=tmp_path / "data",
                      on_error="skip", **settings)
    assert (table["n"].tolist(), table["n_errors"].tolist()) == ([len(records) - 1], [0])


def test_crafted_training_state_is_refused_unrun(tmp_path):
    marker = tmp_path / "code-ran"
    crafted = tmp_path / "state.pt"
    payload = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    # a pickle whose loading calls exec(payload): what a malicious state file would do
    crafted.write_bytes(b"cbuiltins\nexec\n(" + b"V" + payload.encode() + b"\ntR.")
    with pytest.raises(ValueError, match="is not a training state"):
        load_training_state(crafted)
    assert not marker.exists()


@pytest.mark.parametrize("argv, message", [
    (["demo", "--items", "-5"], "-5 must be >= 1"),
    (["engine-demo", "--seconds", "0"], "0 must be > 0"),
    (["engine-demo", "--layers", "0"], "0 must be >= 1"),
    (["sweep", "--model", "organism", "--out", "o", "--benchmarks", "organism", "--max-errors", "-1"],
     "-1 must be >= 0"),
])
def test_bad_command_line_arguments_stop_before_work(argv, message):
    done = subprocess.run([sys.executable, "-m", "seats_analysis", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
