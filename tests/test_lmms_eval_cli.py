"""lmms-eval's own command line (`python -m lmms_eval`) runs the organism as the registered model `seats_qwen_omni` on
the task `seats_organism` and scores what the project's harness scores on the same items; a misconfigured model
argument makes the command exit with a non-zero status.

Needs lmms-eval (`pip install -e ".[lmms]"`), which declares the model through the package's entry point."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval")

import torch  # noqa: E402

from seats_analysis.demo import register_organism  # noqa: E402
from seats_analysis.organism import default_schedule  # noqa: E402
from seats_analysis.evaluate import evaluate  # noqa: E402
from seats_analysis.storage import read_jsonl  # noqa: E402
from seats_analysis.lmms_eval_model import MODEL_NAME, ORGANISM_TASK, write_organism_task  # noqa: E402
from seats_analysis.organism import ORGANISM_TASKS, load_organism, organism_path  # noqa: E402
from seats_analysis.parsers import lmms_clean, parse_strict  # noqa: E402

ITEMS = 6
SYNTH_ORGANISM = organism_path("qwen2_5_imposed")  # the synth task's organism: its items and its schedule
MAX_NEW_TOKENS = 4  # what the harness is asked for; the organism benchmark, like its task, reads one token
SEATS_R10 = "method=seats,video_ratio=0.06,audio_ratio=0.35"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    return write_organism_task(tmp_path_factory.mktemp("tasks"), num_items=ITEMS)


def lmms_eval(task_dir: Path, out: Path, model_args: str) -> subprocess.CompletedProcess:
    "`python -m lmms_eval` on the organism's task, offline."
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(out / "hf"), OMP_NUM_THREADS="1",
               WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, "-m", "lmms_eval", "--model", MODEL_NAME, "--model_args", model_args,
               "--tasks", ORGANISM_TASK, "--include_path", str(task_dir), "--batch_size", "1",
               "--output_path", str(out / "lmms"), "--log_samples", "--verbosity", "ERROR"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=480)


def reply(sample: dict) -> str:
    "The reply lmms-eval logged for a sample (its filtered responses hold one per request)."
    responses = sample["filtered_resps"]
    return responses[0] if isinstance(responses, list) else responses


def test_scores_equal_the_harness(task_dir, tmp_path):
    # the organism's schedule named, as for any checkpoint (its default for the organism's folder is tested in 40_lmms_eval)
    model_args = f"pretrained={SYNTH_ORGANISM},{SEATS_R10},schedule=organism,device=cpu,progress=False"
    done = lmms_eval(task_dir, tmp_path, model_args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results_files = list((tmp_path / "lmms").rglob("*_results.json"))
    samples_files = list((tmp_path / "lmms").rglob(f"*_samples_{ORGANISM_TASK}.jsonl"))
    assert len(results_files) == len(samples_files) == 1, done.stdout[-3000:] + done.stderr[-3000:]
    accuracy = json.loads(results_files[0].read_text())["results"][ORGANISM_TASK]["accuracy,none"]
    samples = sorted(map(json.loads, samples_files[0].read_text().splitlines()), key=lambda s: s["doc_id"])

    torch.set_num_threads(1)
    thinker, processor = load_organism(SYNTH_ORGANISM)
    harness = evaluate(thinker, processor, "organism", "seats", 0.06, 0.35,
                       records=register_organism(num_items=ITEMS, task=ORGANISM_TASKS["synth"]).records(None),
                       schedule=default_schedule(SYNTH_ORGANISM),
                       max_new_tokens=MAX_NEW_TOKENS, results_path=tmp_path / "harness.jsonl", progress=False)
    rows = read_jsonl(tmp_path / "harness.jsonl")
    assert [reply(s) for s in samples] == [lmms_clean(row["response"]) for row in rows]
    assert [parse_strict(row["response"]) == row["answer"] for row in rows] == [s["accuracy"] == 1 for s in samples]
    assert 100 * accuracy == pytest.approx(harness["overall"])
    assert all(row["error"] is None and row["retention"]["video"] < 1 for row in rows)


@pytest.mark.parametrize("model_args, reason", [
    (f"pretrained={SYNTH_ORGANISM},{SEATS_R10},schedule=nowhere.json", "schedule='nowhere.json' cannot be read"),
    (f"pretrained={SYNTH_ORGANISM},method=tome", "method 'tome' is not one of"),
])
def test_misconfigured_model_argument_exits_non_zero(task_dir, tmp_path, model_args, reason):
    done = lmms_eval(task_dir, tmp_path, f"{model_args},device=cpu,progress=False")
    assert done.returncode != 0 and reason in done.stderr, done.stdout[-3000:] + done.stderr[-3000:]
    assert not list((tmp_path / "lmms").rglob("*_results.json"))
