"""Each SEATS stage's selection compiles as one graph (`fullgraph=True`, static shapes) for a layout: on the bench clip
and on a second clip of the same layout (other pixel and audio values) nothing breaks the graph, nothing is compiled
again, and every cut keeps the positions the eager selection keeps.

The bench's random-weight thinker (`bench.bench_thinker`) keeps the real model's 28 decoder layers, so that the shipped
Qwen2.5-Omni-7B schedule applies, at the "tiny" width; its clip (`bench.clip_inputs`) is 4 s long instead of 120 s.
Graphs are compiled as `compiled=True` compiles them (inductor's fused kernels), and, to check the capture itself,
with dynamo's captured graph run as is (`CompileCounter`, which counts the graphs) and with `aot_eager`
(functionalised): those two run eager's kernels and compile in seconds where inductor takes tens of seconds.
"""
import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter
from torch._dynamo.utils import counters

from seats_analysis.bench import SIZES, bench_thinker, clip_inputs
from seats_analysis.catalog import RATIO_PAIRS
from seats_analysis.inner_llm import _drop_layer_keep
from seats_analysis.pre_llm import (_COMPILED, CAN_COMPILE, COMPILE_MIN_TORCH, TORCH_VERSION, SelectionCompiler,
                                    windowed_windivprune_at)
from seats_analysis.seats import SeatsSelectors, seats

pytestmark = pytest.mark.skipif(not CAN_COMPILE, reason=f"the compiled selection needs torch >= {COMPILE_MIN_TORCH}, "
                                                        f"where its picks were checked; this is torch {TORCH_VERSION}")
SCHEDULE = "qwen2_5_omni_7b"
STAGE_GRAPHS = {windowed_windivprune_at, _drop_layer_keep, SeatsSelectors.text_only}  # Stage I, II (a drop layer), III


@pytest.fixture(scope="module")
def bench():
    "The bench's thinker at the tiny width, and two clips of one layout: the bench clip and other pixels and audio."
    torch.set_num_threads(1)
    thinker = bench_thinker(**SIZES["tiny"])
    clip = dict(clip_inputs(seconds=4))
    generator = torch.Generator().manual_seed(1)
    other = {name: value + torch.randn(value.shape, generator=generator, dtype=value.dtype)
             if name in ("pixel_values_videos", "input_features") else value for name, value in clip.items()}
    return thinker, [clip, other]


def compiled_functions(compiler) -> set:
    """The package's functions compiled with `compiler` (a notebook run in this process, as the notebook tests do,
    compiles its own copies of them, defined outside the package)."""
    return {key[0] for key in _COMPILED if key[1] == compiler and key[0].__module__.startswith("seats_analysis.")}


def kept_positions(thinker, clip, compiled=False, compiler=None) -> dict:
    "The original positions each cut of one SEATS prefill of `clip` at R25 keeps, by boundary."
    with torch.no_grad(), seats(thinker, SCHEDULE, *RATIO_PAIRS["R25"], compiled=compiled, compiler=compiler) as run:
        thinker(**clip, use_audio_in_video=True)
    return {event.k: event.kept.tolist() for event in run.events[0].events}


def test_each_stage_is_one_graph_compiled_once_per_layout(bench):
    thinker, clips = bench
    eager = [kept_positions(thinker, clip) for clip in clips]
    assert eager[0][0] != eager[1][0], "the two clips should select differently, or the comparison proves little"
    counter = CompileCounter()
    compiler = SelectionCompiler(backend=counter)
    counters.clear()
    with torch._dynamo.config.patch(error_on_recompile=True):  # a recompilation would raise
        first = kept_positions(thinker, clips[0], True, compiler)
        graphs = counter.frame_count
        second = kept_positions(thinker, clips[1], True, compiler)
    cuts = sorted(first)
    assert 0 in cuts and len(cuts) >= 3, cuts  # Stage I, at least one Stage II drop, Stage III
    assert graphs == len(cuts), (graphs, cuts)  # one graph for each stage's cut: no break splits one
    assert counter.frame_count == graphs, "the second clip of the same layout compiled again"
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert first == eager[0] and second == eager[1]
    assert compiled_functions(compiler) == STAGE_GRAPHS, compiled_functions(compiler)


def test_inductor_graphs_compile_once_and_keep_the_eager_positions(bench):
    "`compiled=True` (inductor): one graph per stage's cut, none again for the second clip, no break, eager's positions."
    thinker, clips = bench
    eager = [kept_positions(thinker, clip) for clip in clips]
    torch._dynamo.reset()  # graphs another test of this process compiled (the bench's compiled modes) would be reused
    counters.clear()
    with torch._dynamo.config.patch(error_on_recompile=True):  # a recompilation would raise
        first = kept_positions(thinker, clips[0], True)
        graphs = counters["stats"]["unique_graphs"]
        second = kept_positions(thinker, clips[1], True)
    assert graphs == len(first), (graphs, sorted(first))  # one graph for each stage's cut: no break splits one
    assert counters["stats"]["unique_graphs"] == graphs, "the second clip of the same layout compiled again"
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert first == eager[0] and second == eager[1]
    assert compiled_functions(SelectionCompiler()) == STAGE_GRAPHS


def test_functionalised_graphs_keep_the_eager_positions_on_both_clips(bench):
    thinker, clips = bench
    compiler = SelectionCompiler(backend="aot_eager")
    for clip in clips:
        assert kept_positions(thinker, clip, True, compiler) == kept_positions(thinker, clip)
    assert compiled_functions(compiler) == STAGE_GRAPHS
