"""Probe folders and evaluation results files written before the results protocol moved into one module (`seats_analysis.storage`)
resume and merge to exactly what the code that wrote them read from them.

`fixtures/results_v0` was written by that code: a probe folder of two shards (a failure retried, a torn last line)
with the table and the kept records that code merged from it, and an evaluation results file with two ranks' part
files (a failure retried on another rank, a failure retried that failed again, a rank killed mid-line) with the
rows that code kept and the file it merged them into. How it was made is in its README."""
import json
import shutil
from pathlib import Path

import pytest
import xarray as xr

from seats_analysis.tables import OPTION_METRICS, RESULT_SETTINGS, answer_table, with_option_metrics
from seats_analysis.evaluate import _collect, _resume
from seats_analysis.probe import _store, merge_parts
from seats_analysis.storage import read_jsonl

FIXTURE = Path(__file__).parent / "fixtures" / "results_v0"
ORGANISM_PROBE = Path(__file__).parents[1] / "data" / "results" / "organism_probe"


def same(a, b) -> bool:
    "Equal records, NaN included (as JSON text: NaN != NaN)."
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_an_old_probe_folder_merges_and_resumes_as_before(tmp_path):
    folder = shutil.copytree(FIXTURE / "probe", tmp_path / "probe")
    with xr.open_dataset(FIXTURE / "probe_merged.nc") as before:
        before = before.load()
    xr.testing.assert_identical(merge_parts(folder), before)
    part, kept = _store(folder).resume(1, 2)
    assert part == folder / "part-00001.jsonl" and part.read_text().endswith("}\n")  # the torn line is trimmed
    assert same(kept, json.loads((FIXTURE / "probe_kept.json").read_text()))
    assert [kept[s]["error"] for s in ("clip0", "clip1", "clip2")] == ["", "", ""]  # the retried failure is replaced
    assert kept["clip3"]["error"] == "OSError: attempt 2"  # of two failures, the newest
    xr.testing.assert_identical(merge_parts(folder), before)


def test_the_shipped_organism_probe_merges_to_its_table(tmp_path):
    folder = shutil.copytree(ORGANISM_PROBE, tmp_path / "organism_probe")
    with xr.open_dataset(folder / "probe.nc") as stored:
        xr.testing.assert_identical(merge_parts(folder), stored.load())


def test_an_old_results_file_with_parts_resumes_and_merges_as_before(tmp_path):
    folder = shutil.copytree(FIXTURE / "evaluate", tmp_path / "evaluate")
    results = folder / "videomme.jsonl"
    rows = read_jsonl(results)
    settings = {k: rows[0][k] for k in RESULT_SETTINGS}
    inputs = {row["key"]: row["input"] for path in sorted(folder.iterdir()) for row in read_jsonl(path)}
    # the rows' own fingerprint and inputs: every file passes the checks of a resume by the same run
    own, kept = _resume(results, 0, 2, settings, rows[0]["fingerprint"], inputs)
    assert own == folder / "videomme.jsonl.rank0-of-2.part" and own.read_text().endswith("}\n")
    assert same(kept, json.loads((FIXTURE / "evaluate_kept.json").read_text()))
    assert kept["002-1"]["error"] is None  # rank 1's retry replaced the failure in the results file
    assert "missing.mp4" in kept["004-1"]["error"]  # of two failures, the first
    keys = json.loads((FIXTURE / "evaluate_keys.json").read_text())
    collected = _collect(results, keys, 0, lambda: None)
    assert results.read_text() == (FIXTURE / "evaluate_merged.jsonl").read_text()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["videomme.jsonl"]
    assert list(collected) == keys and same(list(collected.values()), read_jsonl(results))


def test_an_old_results_file_loads_with_nan_option_metrics(tmp_path):
    """Rows written before the options' log-probabilities were stored (no `option_logprobs`) load into the answer
    table as before, and their continuous metrics are NaN, not an error."""
    cell = tmp_path / "sweep" / "full" / "vr1-ar1"
    cell.mkdir(parents=True)
    shutil.copy(FIXTURE / "evaluate_merged.jsonl", cell / "videomme.jsonl")
    rows = read_jsonl(cell / "videomme.jsonl")
    assert rows and not any("option_logprobs" in row for row in rows)
    answers = with_option_metrics(answer_table(tmp_path / "sweep"))
    assert sorted(answers["item"]) == sorted(row["key"] for row in rows if row.get("error") is None)
    assert answers["option_logprobs"].isna().all() and answers[list(OPTION_METRICS)].isna().all(axis=None)
    assert answers["correct"].tolist() == [row["pred"] == row["answer"] for row in rows if row.get("error") is None]


def test_resuming_an_old_store_is_refused_naming_what_its_fingerprint_lacks(tmp_path):
    """Older fingerprints lack fields recorded now (how digests are computed, the processor, the parser's seed, the
    torch and transformers releases): a resume into such a store is refused naming them, before anything is trimmed,
    and its records still read."""
    from seats_analysis.evaluate import run_fingerprint
    from seats_analysis.probe import _prepare_folder
    from seats_analysis.storage import library_versions, model_fingerprint
    from seats_analysis.stand_ins import offline_processor, tiny_thinker

    thinker, processor = tiny_thinker(num_layers=4), offline_processor()
    folder = shutil.copytree(FIXTURE / "evaluate", tmp_path / "evaluate")
    results = folder / "videomme.jsonl"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    rows = read_jsonl(results)
    settings = {k: rows[0][k] for k in RESULT_SETTINGS}
    current = run_fingerprint(thinker, processor, "full", None, None, None, seed=0)
    with pytest.raises(ValueError, match=r"older version of the package: its fingerprint lacks "
                                         r"model\.digest_version, processor, seed, libraries, so it cannot be checked"):
        _resume(results, 0, 2, settings, current, {row["key"]: row["input"] for row in rows})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the torn part line included
    assert same(read_jsonl(results), read_jsonl(FIXTURE / "evaluate" / "videomme.jsonl"))

    probe_folder = shutil.copytree(FIXTURE / "probe", tmp_path / "probe")
    meta = json.loads((probe_folder / "meta.json").read_text())
    fingerprint = {"model": model_fingerprint(thinker.eval()), "package": meta["fingerprint"]["package"],
                   "libraries": library_versions()}
    with pytest.raises(ValueError, match=r"its fingerprint lacks model\.digest_version, libraries, so it cannot be"):
        _prepare_folder(probe_folder, meta["settings"], fingerprint, 0)
    with xr.open_dataset(FIXTURE / "probe_merged.nc") as stored:
        xr.testing.assert_identical(merge_parts(probe_folder), stored.load())


def test_results_resume_after_their_data_folder_moved(tmp_path):
    """A sample's input digest is what it puts into the model, not where its files are: a data folder moved (or
    mounted elsewhere) resumes its results files, running nothing again, while a changed video is still refused."""
    from seats_analysis.compat import audio_rates
    from seats_analysis.evaluate import evaluate
    from seats_analysis.schedule import Schedule
    from seats_analysis.stand_ins import offline_processor, tiny_thinker
    from seats_analysis.testing import make_fixture

    thinker, processor = tiny_thinker(num_layers=4), offline_processor()
    schedule = Schedule(model_name="tiny-qwen2_5", num_layers=4, middle_block_layer=2, late_block_layer=4,
                        drop_layers=[1, 2], provenance={"source": "probe", "details": "hand-made for the tests"},
                        **audio_rates("qwen2_5"))
    fixture = make_fixture("videomme", tmp_path / "data", n_records=2, seed=7)
    results = tmp_path / "runs" / "videomme_full.jsonl"
    run = dict(method="full", schedule=schedule, max_new_tokens=4, progress=False, results_path=results)
    first = evaluate(thinker, processor, "videomme", data_root=tmp_path / "data", **run)
    written = results.read_bytes()
    shutil.move(tmp_path / "data", tmp_path / "moved")
    ran = []
    again = evaluate(thinker, processor, "videomme", data_root=tmp_path / "moved", on_sample=ran.append, **run)
    assert ran == [] and results.read_bytes() == written
    assert again["overall"] == first["overall"] and again["n"] == first["n"] == 2
    video = sorted((tmp_path / "moved" / "videomme" / fixture.media_root.relative_to(tmp_path / "data" / "videomme"))
                   .rglob("*.mp4"))[0]
    video.write_bytes(video.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="the inputs of 1 stored sample"):
        evaluate(thinker, processor, "videomme", data_root=tmp_path / "moved", **run)
