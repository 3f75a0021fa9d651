"""A method added by one `register_method` line, with its factory and token plan defined here, is known to every job
that lists, runs, plans or draws methods: `evaluate` runs it (its rows keep what its token plan predicts), `plan`'s
table counts it, the trade-off figure's legend labels it and the command line takes its name. No module of the
package or notebook names it, and importing the registry imports no torch."""
import contextlib
import io
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch

from seats_analysis import cli
from seats_analysis.benchmarks import load_benchmark
from seats_analysis.compat import audio_rates
from seats_analysis.evaluate import evaluate
from seats_analysis.figures import tradeoff_figure
from seats_analysis.layout import Kind
from seats_analysis.methods import METHODS
from seats_analysis.plan import plan_table
from seats_analysis.registry import METHOD_REGISTRY, register_method
from seats_analysis.run import prepare_run, pruning
from seats_analysis.schedule import Schedule
from seats_analysis.stand_ins import offline_processor, tiny_thinker
from seats_analysis.testing import make_fixture

ROOT = Path(__file__).resolve().parents[1]
TOY, LABEL = "every-other", "Every other video token"
SCHEDULE = Schedule(model_name="tiny-qwen2_5", num_layers=4, middle_block_layer=2, late_block_layer=4,
                    drop_layers=[1, 2], provenance={"source": "probe", "details": "hand-made for the tests"},
                    **audio_rates("qwen2_5"))


@contextmanager
def every_other(thinker, schedule, video_ratio: float, audio_ratio: float):
    "Before the LLM, keep the 1st, 3rd, 5th ... video token of each row and every other token (the targets are ignored)."
    prepare_run(thinker, schedule, video_ratio, audio_ratio)

    def select(state):
        video = state.kinds == Kind.VIDEO  # (B, S)
        return state.padding_mask & ~(video & (video.cumsum(1) % 2 == 0))

    with pruning(thinker, TOY, lambda recorder: {0: select}) as run:
        yield run


def every_other_token_plan(schedule, tokens, video_ratio: float, audio_ratio: float) -> tuple:
    "One cut before the LLM: half the video, rounded up, and all the audio."
    return ((0, (tokens.video + 1) // 2, tokens.audio),)


@pytest.fixture(scope="module")
def registered():
    register_method(TOY, every_other, every_other_token_plan, LABEL)
    yield METHOD_REGISTRY[TOY]
    METHOD_REGISTRY.pop(TOY)


def test_evaluate_runs_it_and_keeps_what_its_plan_predicts(registered, tmp_path):
    torch.set_num_threads(1)
    fixture = make_fixture("videomme", tmp_path / "data", n_records=2, seed=3)
    records = load_benchmark("videomme", fixture.annotations, fixture.media_root).records
    rows = []
    scores = evaluate(tiny_thinker(num_layers=4), offline_processor(), "videomme", TOY, 0.5, 0.5, records=records,
                      schedule=SCHEDULE, max_new_tokens=2, progress=False, on_sample=rows.append)
    assert (scores["n"], scores["n_errors"]) == (2, 0)
    for row in rows:
        assert row["method"] == TOY and row["error"] is None
        video = row["tokens"]["video"]
        assert video > 1
        assert row["drops"] == [[0, row["seq_len"] - video // 2]]  # the plan's one cut: half the video dropped
        assert row["retention"]["video"] == pytest.approx(((video + 1) // 2) / video)
        assert row["retention"]["audio"] == 1.0


def test_plan_counts_it(registered):
    table = plan_table("qwen2_5_omni_7b", 60, settings=["R10", "R35"])
    assert list(table.method.unique()) == list(METHOD_REGISTRY)  # every registered method, in order, the toy last
    rows = table[table.method == TOY]
    assert rows.setting.tolist() == ["R10", "R35"] and (rows.note == "").all()
    expected = rows.text + (rows.video + 1) // 2 + rows.audio
    assert rows.layer1_tokens.tolist() == expected.tolist()
    full = table[table.method == "full"].iloc[0]
    assert (rows.tflops_exact < full.tflops_exact).all()


def test_the_tradeoff_figure_labels_it(registered):
    results = pd.DataFrame({"method": ["full", "seats", "seats", TOY, TOY],
                            "ratio_name": ["full", "R10", "R35", "R10", "R35"],
                            "tflops": [111.0, 12.2, 36.7, 55.0, 56.0], "score": [48.7, 46.9, 49.3, 47.0, 47.2]})
    fig = tradeoff_figure(results)
    method_legend = fig.legends[0]
    assert [t.get_text() for t in method_legend.get_texts()] == ["full tokens", "SEATS", LABEL]


def test_the_command_line_takes_its_name(registered, tmp_path):
    assert cli.method_option(f"{TOY}:seed=1") == (TOY, "seed", 1)
    args = cli.command_parser().parse_args(["sweep", "--model", "organism", "--methods", f"seats,{TOY}",
                                            "--out", str(tmp_path / "sweep")])
    assert args.methods == ["seats", TOY]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["plan", "--model", "organism", "--seconds", "8", "--methods", f"full,{TOY}",
                         "--ratios", "R10"]) == 0
    assert TOY in out.getvalue()


def test_it_is_named_nowhere_else(registered):
    assert TOY in METHODS  # the factories' view lists it
    sources = [*ROOT.joinpath("seats_analysis").glob("*.py"), *ROOT.joinpath("nbs").glob("*.ipynb")]
    assert [path.name for path in sources if TOY in path.read_text()] == []


def test_importing_the_registry_imports_no_torch():
    script = "import seats_analysis.registry, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
