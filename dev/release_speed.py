"""Prefill time (encoders, selection, the rest) of the authors' releases and of this project's methods, side by side on one CPU thread
(a development tool, not run in CI).

Usage, in the release's environment (torch 2.8, transformers 4.57.1), then where `seats(..., compiled=True)` runs
(torch >= 2.11; `seats_analysis.pre_llm.CAN_COMPILE`), from a clean checkout of the code (the `revision` column):

    PYTHONPATH=. OMP_NUM_THREADS=1 /work/venv-release/bin/python dev/release_speed.py \\
        --seats /work/release/SEATS --omnizip /work/release/OmniZip --dycoke /work/release/DyCoke
    PYTHONPATH=. OMP_NUM_THREADS=1 /work/venv-rel214/bin/python dev/release_speed.py \\
        --seats /work/release/SEATS --omnizip /work/release/OmniZip --dycoke /work/release/DyCoke

Options: --repeats N (timed rounds, default 7), --seconds S (clip length, default 20: ten 2-second
windows), --methods seats,omnizip,dycoke-om, --out PREFIX (default data/benchmarks/release_side_by_side).
Each run replaces its own environment's, clip's and methods' rows (same torch, transformers, seconds and method) in
PREFIX.csv and PREFIX.kernels.csv and rewrites PREFIX.md from all rows, so the runs give one table. The committed
table: each environment at the default 20 s with every method, then `--seconds 60 --methods seats` (thirty windows),
all with `--repeats 21`.

Every side times the same thing: the wall clock around one `thinker(**inputs, use_audio_in_video=True)` under
`torch.no_grad()`, this project's methods inside their context entered once per row before the first prefill; the
sides alternate, one prefill each per round, the order rotated each round. Each prefill is split into encoders
(forward hooks on `visual` and `audio_tower`), selection outside the encoders (the release's selection functions,
wrapped with a timer; ours: `PruningRun.latency.selection` less its encoder statistic) and the rest (decoder and glue).
For SEATS at R10 one prefill per side is also profiled, and the calls of its attention ops counted by phase.

The thinker is `tiny_thinker('qwen2_5', num_layers=12, seed=0, portable=True)` on every side, float32, SDPA in the
decoder, and in the encoders PyTorch attention per `cu_seqlens` chunk on every side, by one function: the release's
SEATS thinker runs its flash-attention classes with `flash_attn_varlen_func` bound to `stand_ins.varlen_attention`
(`shared_attention`), the stock thinkers transformers' `flash_attention_2` as `stand_ins.flash_attention_stand_in`,
which calls the same function (`per_chunk_encoders`). The clip
is `seats_analysis.bench.clip_inputs(seconds)` (a synthetic clip with its audio, 2 fps, 112x112). The sides:
- SEATS: the release's thinker class with these weights, patched by its own entry point (`dev/release_forwards.py`:
  `load_release`, `release_thinker`, `config_file`, with the schedule `FORWARD_SCHEDULE`), against
  `METHODS['seats']` with the same schedule, eager and `compiled=True`.
- OmniZip: the stock thinker with the release's audio-attention forward (`dev/release_omnizip.py`: `release_method`,
  flash attention as plain PyTorch attention per chunk) in the last audio layer, which gives the saliency, and the
  release's `omnizip` (`omnizip/omnizip_core.py`) on the LLM input embeddings; the decoder then runs on what it
  keeps (its embeddings, M-RoPE positions and mask sliced, as the release's thinker forward does). Against
  `METHODS['omnizip']` with the same discard fractions, group size and contextual ratio (the recorder's `SETTINGS`).
- DyCoke: the stock thinker with the release's `dycole_ttm` (`dev/release_dycoke.py`: `release_function`) applied on
  the LLM input to the video tokens (frames: temporal grids) and to the audio (frames: 2-second windows), as
  `dycoke-om` does; the kept positions are found again from its output (`kept_indices`) so that the decoder gets
  their positions. Against `METHODS['dycoke-om']` at the same merging ratio (`merging_ratio`, the release's dycoke_k).
Nothing of the releases is copied here: their code is imported, or read with `ast`, from the checkouts at run time.
"""
import argparse
import platform
import statistics
import sys
import tempfile
import time
import types
from collections import Counter
from contextlib import ExitStack, nullcontext
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import binom
import transformers
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release_dycoke import kept_indices, release_function  # noqa: E402
from release_forwards import (FORWARD_SCHEDULE, Recorder, boundaries, config_file, kinds_of, load_release,  # noqa: E402
                              release_thinker)
from release_omnizip import RELEASE_DEFAULTS, SETTINGS as OMNIZIP_SETTINGS, release_method  # noqa: E402
from release_positions import COMMIT as SEATS_COMMIT, NUM_LAYERS, THINKER_SEED  # noqa: E402

from seats_analysis.bench import clip_inputs  # noqa: E402
from seats_analysis.storage import code_revision  # noqa: E402
from seats_analysis.compat import multimodal_model, text_model  # noqa: E402
from seats_analysis.catalog import RATIO_PAIRS  # noqa: E402
from seats_analysis.layout import Kind, temporal_windows, token_id, token_kinds  # noqa: E402
from seats_analysis.methods import METHODS  # noqa: E402
from seats_analysis.pre_llm import CAN_COMPILE  # noqa: E402
from seats_analysis.storage import markdown_table  # noqa: E402
from seats_analysis import stand_ins  # noqa: E402
from seats_analysis.stand_ins import tiny_thinker, use_flash_stand_in  # noqa: E402
from seats_analysis.testing import tiny_schedule  # noqa: E402

FAMILY = "qwen2_5"
COMMITS = {"seats": SEATS_COMMIT, "omnizip": "66ef5d7f2b7201841505bb45ef6b5b4c5bf99ca8 (omnizip_core.py; the audio "
           "attention of modeling_qwen2_5_omni.py)", "dycoke-om": "dd7463498203479d0ff6f2d29c4e72928c0af244"}
DYCOKE_SETTINGS = {"k0.7 (release)": 0.7, "k0.5": 0.5, "k0.3": 0.3}  # merging ratios of dev/release_dycoke.py's cases
SEATS_TIMED = ("video_windivprune", "audio_windivprune", "top_down_token_selection", "remove_non_textual_tokens")


class Clock:
    "Seconds spent inside wrapped functions, summed until `reset`; each call labelled `label` for a profiler."

    def __init__(self, label: str | None = None):
        self.seconds, self.label = 0.0, label

    def reset(self):
        self.seconds = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                with record_function(self.label) if self.label else nullcontext():
                    return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        timed.__wrapped__ = function
        return timed


class EncoderClock:
    "Wall-clock seconds inside a thinker's vision and audio encoders (forward hooks), summed until `reset`; each call a profiler range `encoders`."

    def __init__(self, thinker):
        self.seconds, self._open = 0.0, None
        model = multimodal_model(thinker)
        for encoder in (model.visual, model.audio_tower):
            encoder.register_forward_pre_hook(self._enter)
            encoder.register_forward_hook(self._leave)

    def reset(self):
        self.seconds = 0.0

    def _enter(self, module, args):
        self._open = (time.perf_counter(), record_function("encoders"))
        self._open[1].__enter__()

    def _leave(self, module, args, output):
        start, label = self._open
        label.__exit__(None, None, None)
        self.seconds += time.perf_counter() - start


def varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, dropout_p=0.0,
                     softmax_scale=None, causal=False, **unused):
    """flash-attn's `flash_attn_varlen_func` for the releases' encoders, as this project's stand-in computes it for its
    own thinkers (`stand_ins.varlen_attention`): both sides of a row run the same function per chunk."""
    return stand_ins.varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, causal, softmax_scale)


def shared_attention(modules) -> None:
    "Bind the releases' `flash_attn_varlen_func` in `modules` to `varlen_attention`."
    for module in modules:
        if hasattr(module, "flash_attn_varlen_func"):
            module.flash_attn_varlen_func = varlen_attention


def per_chunk_encoders(thinker):
    """`thinker` (stock transformers) with its encoders' attention run as the release's thinker runs them: transformers'
    `flash_attention_2` as `stand_ins.flash_attention_stand_in`, PyTorch attention per `cu_seqlens` chunk (stock SDPA
    gives the audio encoder one call over the whole sequence with a block-diagonal mask). The decoder keeps SDPA."""
    if not use_flash_stand_in():
        raise RuntimeError("flash-attn is installed: the encoders would run it, not PyTorch attention per chunk")
    config = thinker.config
    config.vision_config._attn_implementation = config.audio_config._attn_implementation = "flash_attention_2"
    return thinker


def stock_thinker():
    "The side-by-side thinker, stock transformers, its encoders' attention per chunk."
    return per_chunk_encoders(tiny_thinker(FAMILY, num_layers=NUM_LAYERS, seed=THINKER_SEED, portable=True))


def timed_prefill(thinker, inputs) -> float:
    "Wall-clock seconds of one `thinker(**inputs, use_audio_in_video=True)` (the same call on every side)."
    start = time.perf_counter()
    thinker(**inputs, use_audio_in_video=True)
    return time.perf_counter() - start


def release_side(thinker, inputs, encoders: EncoderClock, selection: Clock, statistic: Clock | None = None):
    "One timed prefill of a release (or release-driven) thinker: {prefill, encoders, selection, statistic} seconds."
    def prefill() -> dict:
        for clock in (encoders, selection, statistic or Clock()):
            clock.reset()
        seconds = timed_prefill(thinker, inputs)
        return dict(prefill=seconds, encoders=encoders.seconds, selection=selection.seconds,
                    statistic=statistic.seconds if statistic else 0.0)
    return prefill


def ours_side(stack: ExitStack, thinker, method, schedule, targets, inputs, encoders: EncoderClock):
    """This project's `method` entered once on `thinker` (on `stack`) and one timed prefill in it: (its `PruningRun`,
    the prefill function). Selection: `latency.selection` less the encoder statistic, which runs inside the encoders."""
    run = stack.enter_context(method(thinker, schedule, *targets))
    recorder = run.clock.recorder

    def prefill() -> dict:
        encoders.reset()
        before = recorder.seconds if recorder is not None else 0.0
        seconds = timed_prefill(thinker, inputs)
        statistic = (recorder.seconds if recorder is not None else 0.0) - before
        return dict(prefill=seconds, encoders=encoders.seconds, selection=run.latencies[-1].selection - statistic,
                    statistic=statistic)
    return run, prefill


def first_kept(run) -> dict:
    "Kept original positions per boundary of `run`'s first prefill."
    return {str(event.k): event.kept[0][event.kept[0] >= 0].tolist() for event in run.events[0].events}


def last_encoder_attentions(thinker) -> list:
    "The attention modules of the last vision block and the last audio layer (where statistics are computed)."
    model = multimodal_model(thinker)
    return [model.visual.blocks[-1].attn, model.audio_tower.layers[-1].self_attn]


def time_instance_forward(module, clock: Clock):
    "Time each call of `module`'s forward (the class's, as patched when this is called) on `clock`."
    module.forward = clock.wrap(types.MethodType(type(module).forward, module))


class Cuts:
    "A forward pre-hook on the text model: the release's selection on the LLM input, the decoder on what it keeps."

    def __init__(self, thinker, select):
        self.thinker, self.select, self.call, self.kept = thinker, select, {}, None
        self.handles = [thinker.register_forward_pre_hook(self._remember, with_kwargs=True),
                        text_model(thinker).register_forward_pre_hook(self._cut, with_kwargs=True)]

    def _remember(self, module, args, kwargs):
        self.call = kwargs

    def _cut(self, module, args, kwargs):
        embeds = kwargs["inputs_embeds"]  # (1, S, D)
        keep = self.select(embeds, self.call)  # (S,) bool
        self.kept = keep.nonzero().flatten().tolist()
        kwargs = dict(kwargs, inputs_embeds=embeds[:, keep])
        kwargs["position_ids"] = kwargs["position_ids"][..., keep]
        if kwargs.get("attention_mask") is not None:
            kwargs["attention_mask"] = kwargs["attention_mask"][:, keep]
        return args, kwargs


ATTENTION_OPS = ("scaled_dot_product", "softmax", "flash_attention")  # op names that tell which attention kernel ran


def phase_of(event) -> str:
    "selection (inside a `select.*` range), encoders (inside `encoders`) or decoder: where a profiled op ran."
    inside = set()
    while event is not None:
        inside.add("selection" if event.name.startswith("select.") else event.name)
        event = event.cpu_parent
    return "selection" if "selection" in inside else "encoders" if "encoders" in inside else "decoder"


def attention_kernels(prefill) -> Counter:
    "Calls of the attention ops (`ATTENTION_OPS`) in one `prefill()` under `torch.profiler`, by (phase, op)."
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        prefill()
    return Counter((phase_of(event), event.name) for event in profiler.events()
                   if any(name in event.name for name in ATTENTION_OPS))


def seats_side(checkout: Path, inputs, repeats: int, compiled: bool) -> tuple[list[dict], list[dict]]:
    "SEATS: the release's patched thinker and this project's, at every RATIO_PAIRS setting; rows and kernel counts (R10)."
    modeling, patched, dispatch, _ = load_release(checkout)
    shared_attention([*modeling.values(), *patched])
    selection = Clock("select.release")
    for module in patched:  # timed first, recorded around the timer (the mask copies are not timed)
        for name, function in list(vars(module).items()):
            if callable(function) and name.removesuffix("_qwen3") in SEATS_TIMED:
                setattr(module, name, selection.wrap(function))
    recorder = Recorder(patched)
    statistic = Clock()
    ours = {"eager": METHODS["seats"]}
    if compiled:
        ours["compiled"] = partial(METHODS["seats"], compiled=True)
    thinkers = {name: stock_thinker() for name in ours}  # one each: a thinker takes one method at a time
    clocks = {name: EncoderClock(thinker) for name, thinker in thinkers.items()}
    schedule = tiny_schedule(FAMILY, **FORWARD_SCHEDULE)
    kinds = kinds_of(inputs["input_ids"][0], thinkers["eager"].config)
    folder = Path(tempfile.mkdtemp())
    rows, kernels = [], []
    for setting, targets in RATIO_PAIRS.items():
        stand_in = release_thinker(FAMILY, modeling, thinkers["eager"])
        dispatch(stand_in, "seats", *targets, config_file(checkout, "seats", folder), pretrained="tiny")
        for attention in last_encoder_attentions(stand_in.thinker):
            time_instance_forward(attention, statistic)
        with torch.no_grad(), ExitStack() as stack:
            sides = {"release": release_side(stand_in.thinker, inputs, EncoderClock(stand_in.thinker), selection,
                                             statistic)}
            runs = {}
            for name, method in ours.items():
                runs[name], sides[name] = ours_side(stack, thinkers[name], method, schedule, targets, inputs,
                                                    clocks[name])
            recorder.clear()
            for side in sides.values():  # warm-up (compiles), the release's and our kept positions
                side()
            release_kept = {k: v["kept_all"] for k, v in boundaries("seats", recorder, kinds).items()}
            kept = {name: first_kept(run) for name, run in runs.items()}
            if setting == "R10":
                kernels += [dict(method="seats", side=name, phase=phase, op=op, calls=calls)
                            for name, side in sides.items() for (phase, op), calls in attention_kernels(side).items()]
            times = interleave(sides, repeats)
        cuts, previous = {}, None  # the release's boundaries where it cut
        for k in sorted(release_kept, key=int):
            if release_kept[k] != previous:
                cuts[k] = previous = release_kept[k]
        rows.append(row("seats", setting, f"video {targets[0]}, audio {targets[1]}", times,
                        {name: value == cuts for name, value in kept.items()}))
    return rows, kernels


def interleave(sides: dict, repeats: int) -> dict:
    "Per side, the timed parts of each prefill: the sides in turn, in rotated order, `repeats` times."
    times = {name: [] for name in sides}
    names = list(sides)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(sides[name]())
    return times


SIDES = {"release": "release", "eager": "ours_eager", "compiled": "ours_compiled"}  # side: column prefix
PARTS = ("encoders", "selection", "rest", "statistic")


def median_interval(values: list, level: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of `values`: the order statistics k and n + 1 - k, with the largest k
    whose coverage (from the binomial law of how many values fall below the median) is at least `level`."""
    ordered, n = sorted(values), len(values)
    k = max([k for k in range(1, n // 2 + 1) if 1 - 2 * binom.cdf(k - 1, n, 0.5) >= level], default=None)
    return (float("nan"), float("nan")) if k is None else (ordered[k - 1], ordered[n - k])


def paired_ratio(ours: list, release: list) -> tuple[float, float, float]:
    """Median over the rounds of ours / release, each round's two prefills run next to each other, and its 95%
    interval (`median_interval`): what drifts between rounds (other work on the machine) cancels within a round."""
    if not ours:
        return float("nan"), float("nan"), float("nan")
    ratios = [o["prefill"] / r["prefill"] for o, r in zip(ours, release)]
    return (statistics.median(ratios), *median_interval(ratios))


def row(method: str, setting: str, settings: str, times: dict, same: dict) -> dict:
    """One table row: per side the medians of the prefill and of its parts (rest: prefill - encoders - selection), and
    ours against the release round by round (`paired_ratio`)."""
    out = dict(method=method, setting=setting, settings=settings)
    for side, prefix in SIDES.items():
        parts = [dict(t, rest=t["prefill"] - t["encoders"] - t["selection"]) for t in times.get(side, [])]
        def median(part):
            return statistics.median(p[part] for p in parts) if parts else float("nan")
        out[f"{prefix}_prefill_s"] = median("prefill")
        out.update({f"{prefix}_{part}_ms": 1e3 * median(part) for part in PARTS})
    for side in ("eager", "compiled"):
        out[f"{side}_over_release_prefill"] = out[f"ours_{side}_prefill_s"] / out["release_prefill_s"]
        (out[f"{side}_over_release_paired"], out[f"{side}_paired_low"],
         out[f"{side}_paired_high"]) = paired_ratio(times.get(side, []), times["release"])
    for side in ("eager", "compiled"):
        out[f"same_kept_{side}"] = same.get(side)
    return out


def cut_input_row(cuts: "Cuts", release, ours: tuple, repeats: int) -> tuple[dict, dict]:
    """One row of a method that cuts the LLM input: `release` (its timed prefill, `cuts` installed on its thinker) and
    this project's method (`ours_side`'s arguments after the stack) warmed up, timed in turn, and whether the positions
    entering the first layer agree; the release's hooks removed after."""
    with torch.no_grad(), ExitStack() as stack:
        run, eager = ours_side(stack, *ours)
        sides = {"release": release, "eager": eager}
        for side in sides.values():  # warm-up
            side()
        kept = first_kept(run)
        times = interleave(sides, repeats)
    for handle in cuts.handles:
        handle.remove()
    return times, {"eager": kept.get("0") == cuts.kept}


def omnizip_side(checkout: Path, inputs, repeats: int) -> list[dict]:
    "OmniZip: the release's saliency attention and `omnizip` on the stock thinker, and this project's, at the recorder's settings."
    sys.path.insert(0, str(checkout))
    from omnizip.omnizip_core import omnizip as release_omnizip
    clock, statistic = Clock("select.release"), Clock()
    selection = clock.wrap(release_omnizip)
    thinker, release = stock_thinker(), stock_thinker()  # ours; the release's hooks
    encoders = {"eager": EncoderClock(thinker), "release": EncoderClock(release)}
    schedule = tiny_schedule(FAMILY, **FORWARD_SCHEDULE)
    forward = release_method(checkout, FAMILY, attention=varlen_attention)
    attn = multimodal_model(release).audio_tower.layers[-1].self_attn
    attn.attention_dropout = getattr(attn, "attention_dropout", 0.0)
    saliency = {}

    def saliency_attention(hidden_states, cu_seqlens=None, **unused):
        "The release's attention forward with the saliency, pooled in pairs as its encoder does (an odd last frame dropped)."
        output, logits, _ = forward(attn, hidden_states, cu_seqlens=cu_seqlens, return_logits=True)
        if logits.shape[0] % 2 == 1:
            logits = logits[:-1]
        saliency["audio"] = logits.view(-1, 2).mean(dim=-1) if logits.shape[0] >= 2 else logits
        return output
    attn.forward = statistic.wrap(saliency_attention)
    audio_id, video_id = token_id(release.config, "audio"), token_id(release.config, "video")
    rows = []
    for setting, changes in OMNIZIP_SETTINGS.items():
        settings = {**RELEASE_DEFAULTS[FAMILY], **changes}

        def select(embeds, call):
            _, keep = selection(embeds, saliency["audio"], call["input_ids"], audio_id, video_id, call["video_grid_thw"],
                                merging_ratio_audio=settings["rho_audio"], merging_ratio_v=settings["rho_video"],
                                contextual_ratio=settings["contextual_ratio"], g=settings["g"])
            return keep
        method = partial(METHODS["omnizip"], **settings)
        targets = (1 - settings["rho_video"], 1 - settings["rho_audio"])
        times, same = cut_input_row(Cuts(release, select), release_side(release, inputs, encoders["release"], clock,
                                                                        statistic),
                                    (thinker, method, schedule, targets, inputs, encoders["eager"]), repeats)
        rows.append(row("omnizip", setting, ", ".join(f"{k} {v}" for k, v in settings.items()), times, same))
    return rows


def dycoke_side(checkout: Path, inputs, repeats: int) -> list[dict]:
    "DyCoke: the release's temporal merging on the stock thinker's video grids and audio windows, and dycoke-om."
    function, recording = release_function(checkout)
    clock = Clock("select.release")
    merge = clock.wrap(function)
    thinker, release = stock_thinker(), stock_thinker()
    encoders = {"eager": EncoderClock(thinker), "release": EncoderClock(release)}
    schedule = tiny_schedule(FAMILY, **FORWARD_SCHEDULE)
    merge_unit = release.config.vision_config.spatial_merge_size ** 2
    rows = []
    for setting, ratio in DYCOKE_SETTINGS.items():
        def select(embeds, call):
            kinds = token_kinds(call["input_ids"], release.config)[0]
            keep = torch.ones(kinds.shape[0], dtype=torch.bool)
            _, h, w = call["video_grid_thw"][0].tolist()
            for kind, tokens_per_frame in ((Kind.VIDEO, h * w // merge_unit), (Kind.AUDIO, schedule.audio_window_tokens)):
                positions = (kinds == kind).nonzero().flatten()
                features = embeds[0, positions]
                recording.pieces = None
                output = merge(features, tokens_per_frame, ratio)
                whole = features.shape[0] // tokens_per_frame * tokens_per_frame
                found = kept_indices(features[:whole], tokens_per_frame, recording.pieces, output)
                mask = torch.zeros(positions.shape[0], dtype=torch.bool)
                mask[found] = True  # rows after the last whole frame are not in the release's output
                keep[positions] = mask
            return keep
        method = partial(METHODS["dycoke-om"], merging_ratio=ratio)
        times, same = cut_input_row(Cuts(release, select), release_side(release, inputs, encoders["release"], clock),
                                    (thinker, method, schedule, (1.0, 1.0), inputs, encoders["eager"]), repeats)
        rows.append(row("dycoke-om", setting, f"merging_ratio {ratio}", times, same))
    return rows


def machine() -> str:
    "The CPU's model name."
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


PREFILL_COLUMNS = ["method", "setting", "torch", "transformers", "release_prefill_s", "ours_eager_prefill_s",
                   "ours_compiled_prefill_s", "eager_over_release_prefill", "compiled_over_release_prefill",
                   "eager_over_release_paired", "eager_paired_low", "eager_paired_high", "compiled_over_release_paired",
                   "compiled_paired_low", "compiled_paired_high", "same_kept_eager", "same_kept_compiled"]
PART_COLUMNS = [f"{prefix}_{part}_ms" for prefix in SIDES.values() for part in PARTS]
COLUMNS = PREFILL_COLUMNS + PART_COLUMNS + ["settings", "seconds", "tokens", "windows", "repeats", "threads", "cpu",
                                             "revision"]
KERNEL_COLUMNS = ["method", "torch", "transformers", "seconds", "side", "phase", "op", "calls", "revision"]


def replace_environment(path: Path, new: pd.DataFrame, columns: list, seconds: float) -> pd.DataFrame:
    """`path`'s rows of other environments (torch, transformers), clips (seconds) or methods and `new`'s, written back;
    rows written before a column existed keep it empty."""
    if path.exists():
        old = pd.read_csv(path).reindex(columns=columns)
        here = ((old.torch == torch.__version__) & (old.transformers == transformers.__version__)
                & (old.seconds == seconds) & old.method.isin(new.method))
        new = pd.concat([old[~here], new], ignore_index=True)
    table = new[columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


def shown(table: pd.DataFrame) -> str:
    "`table` as Markdown, floats to 4 significant digits, missing values empty."
    table = table.copy()
    for column in table.columns:
        table[column] = table[column].map(lambda x: "" if x is None or (isinstance(x, float) and pd.isna(x))
                                          else f"{x:.4g}" if isinstance(x, float) else str(x))
    return markdown_table(table)


def describe(table: pd.DataFrame, kernels: pd.DataFrame) -> str:
    "The Markdown page: the setup, what each column measures, the prefill table, its parts, the attention kernels."
    first = table.iloc[0]
    clips = "; ".join(f"{seconds:g} s, {tokens} tokens, {windows} temporal windows" for seconds, tokens, windows
                      in table[["seconds", "tokens", "windows"]].drop_duplicates().itertuples(index=False))
    environments = "; ".join(f"torch {t}, transformers {v}" for t, v in table[["torch", "transformers"]].drop_duplicates()
                             .itertuples(index=False))
    setup = (
        f"Clips: `seats_analysis.bench.clip_inputs(seconds)`, a synthetic clip (2 fps, 112x112, with its audio): "
        f"{clips} (`seconds` names each row's). Thinker: `tiny_thinker('{FAMILY}', "
        f"num_layers={NUM_LAYERS}, seed={THINKER_SEED}, portable=True)` (hidden 64), float32, on every side; SEATS' "
        f"schedule {FORWARD_SCHEDULE} on both sides. Machine: {first.cpu}, {first.threads} thread "
        f"(`torch.set_num_threads(1)`), shared with other work. Environments: {environments} (each row names its "
        "own). Releases: SEATS `xxayt/SEATS` " + COMMITS["seats"] + ", OmniZip `KD-TAO/OmniZip` " + COMMITS["omnizip"]
        + ", DyCoke `KD-TAO/DyCoke` " + COMMITS["dycoke-om"] + ". Written by `dev/release_speed.py`.")
    timing = (
        "What is timed, on every side alike: the wall clock around one `thinker(**inputs, use_audio_in_video=True)` "
        "under `torch.no_grad()`. For this project's methods the thinker runs inside the method's context "
        "(`METHODS[name](thinker, schedule, video_ratio, audio_ratio, ...)`), entered once per row before the first "
        "prefill, so entering and leaving it is outside the clock, as the release's patching is. Each row: one "
        "untimed prefill per side (compiling, for `compiled=True`), then "
        f"{first.repeats} rounds in which every side runs one prefill, the order rotated each round; every number is "
        "the median over the rounds (the medians of the parts need not add up to the median prefill).\n\n"
        "Same encoder attention on every side: the release's SEATS thinker runs its own flash-attention classes in "
        "the encoders, with `flash_attn_varlen_func` bound to `seats_analysis.stand_ins.varlen_attention`, PyTorch "
        "attention per `cu_seqlens` chunk (`shared_attention`); every stock thinker here (this project's, and the one "
        "the OmniZip and DyCoke releases drive) runs transformers' `flash_attention_2` in its encoders as "
        "`seats_analysis.stand_ins.flash_attention_stand_in`, which calls the same function "
        "(`per_chunk_encoders`; stock SDPA would run the audio encoder as one call over the whole sequence with a "
        "block-diagonal mask). The decoders keep SDPA: the release's copy of the modeling file and stock "
        "transformers call it differently, see the kernels below.")
    columns = (
        "- `release_prefill_s`, `ours_eager_prefill_s`, `ours_compiled_prefill_s`: the timed thinker call; for SEATS "
        "the release's own patched thinker class, for OmniZip and DyCoke the stock thinker with the release's "
        "functions on the LLM input (see the script's docstring); ours without and with `compiled=True` (SEATS "
        "only; empty where `seats_analysis.pre_llm.CAN_COMPILE` is false, torch < 2.11). `*_over_release_prefill`: "
        "ours / release, of the medians. `*_over_release_paired`: the median over the rounds of ours / release, the "
        "two prefills of a round run next to each other, so that what drifts between rounds (other work on the "
        "machine) cancels; `*_paired_low` and `*_paired_high` its 95% interval (order statistics of the rounds' "
        "ratios, distribution-free). Ours is slower than the release where `*_paired_low` is above 1, faster where "
        "`*_paired_high` is below 1. `revision`: this project's code revision (empty: a row written before the "
        "column existed).\n"
        "- `*_encoders_ms`: inside the vision and audio encoders, from forward hooks on `visual` and `audio_tower` "
        "(the encoder statistic included: both sides compute it there).\n"
        "- `*_selection_ms`: the selection outside the encoders. Release: time inside its selection functions, "
        "wrapped with a timer at run time (SEATS: `video_windivprune`, `audio_windivprune`, "
        "`top_down_token_selection` with its last-token attention scores, `remove_non_textual_tokens`; OmniZip: "
        "`omnizip`; DyCoke: `dycole_ttm` on the video and on the audio). Ours: `PruningRun.latency.selection` less "
        "its encoder statistic (the selectors with their cuts).\n"
        "- `*_rest_ms`: prefill - encoders - selection: the decoder and the glue (embedding, positions, masks, the "
        "cuts' bookkeeping; for the DyCoke release also finding its kept positions again, `kept_indices`).\n"
        "- `*_statistic_ms` (inside `*_encoders_ms`): ours: the statistic's hooks (`latency.selection` = "
        "`selection` + `statistic`); release: the whole forward of the attention modules that compute it inline "
        "(SEATS: last vision block and last audio layer; OmniZip: the audio saliency layer), their attention "
        "included, so an upper bound.\n"
        "- `same_kept_*`: whether this project's run kept the release's original positions at every boundary where "
        "the release cut (SEATS), or entering the first layer (OmniZip, DyCoke).")
    kernel_text = (
        "Attention kernels, SEATS at R10, one profiled prefill per side (`torch.profiler`): calls of the ops whose "
        f"names contain {', '.join(ATTENTION_OPS)}, by where they ran: `encoders` (inside the encoder hooks), "
        "`selection` (the release's wrapped functions; ours' `select.*` ranges, the encoder statistic included) or "
        "`decoder` (the rest). The release's encoder softmax calls beyond the SDPA ones are its statistic, computed "
        "inline in its last vision and audio attention. `aten::_scaled_dot_product_flash_attention_for_cpu` is "
        "PyTorch's fused CPU kernel; `aten::_scaled_dot_product_attention_math` (with `aten::_safe_softmax`) its "
        "unfused fallback, which materialises the attention matrix.")
    pivot = kernels.copy()
    pivot["op"] = pivot["op"] + " x" + pivot["calls"].astype(str)
    pivot = (pivot.groupby(["torch", "seconds", "side", "phase"], sort=False)["op"].agg(", ".join).unstack("phase")
             .reindex(columns=["encoders", "selection", "decoder"]).reset_index())
    prefill = table[PREFILL_COLUMNS[:3] + ["seconds"] + PREFILL_COLUMNS[3:] + ["settings"]]
    parts = table[["method", "setting", "torch", "seconds"] + [c for c in PART_COLUMNS if table[c].notna().any()]]
    return (f"# The releases and this project side by side\n\n{setup}\n\n{timing}\n\n{columns}\n\n"
            f"## Prefill\n\n{shown(prefill)}\n\n## Parts of the prefill (ms)\n\n{shown(parts)}\n\n"
            f"## Attention kernels\n\n{kernel_text}\n\n{shown(pivot)}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seats", type=Path, required=True, help="xxayt/SEATS checkout")
    parser.add_argument("--omnizip", type=Path, required=True, help="KD-TAO/OmniZip checkout")
    parser.add_argument("--dycoke", type=Path, required=True, help="KD-TAO/DyCoke checkout")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--methods", default="seats,omnizip,dycoke-om")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data/benchmarks/release_side_by_side")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    inputs = clip_inputs(args.seconds)
    kinds = token_kinds(inputs["input_ids"], tiny_thinker(FAMILY, num_layers=1, portable=True).config)[0]
    windows = len(temporal_windows(kinds))
    if windows < 10:
        raise ValueError(f"--seconds {args.seconds:g} gives {windows} temporal windows; at least 10 are needed")
    methods = args.methods.split(",")
    rows, kernels = [], []
    if "seats" in methods:
        seats_rows, kernels = seats_side(args.seats, inputs, args.repeats, CAN_COMPILE)
        rows += seats_rows
    if "omnizip" in methods:
        rows += omnizip_side(args.omnizip, inputs, args.repeats)
    if "dycoke-om" in methods:
        rows += dycoke_side(args.dycoke, inputs, args.repeats)
    environment = dict(torch=torch.__version__, transformers=transformers.__version__)
    new = pd.DataFrame(rows).assign(**environment, seconds=args.seconds, tokens=len(kinds), windows=windows,
                                    repeats=args.repeats,
                                    threads=torch.get_num_threads(), cpu=machine(), revision=code_revision())
    table = replace_environment(args.out.with_suffix(".csv"), new, COLUMNS, args.seconds)
    made = dict(environment, seconds=args.seconds, revision=code_revision())  # what made every kernel row
    kernel_rows = pd.DataFrame(kernels, columns=[c for c in KERNEL_COLUMNS if c not in made])
    kernel_table = replace_environment(args.out.with_suffix(".kernels.csv"), kernel_rows.assign(**made)[KERNEL_COLUMNS],
                                       KERNEL_COLUMNS, args.seconds)
    page = describe(table, kernel_table)
    args.out.with_suffix(".md").write_text(page)
    print(page)


if __name__ == "__main__":
    main()
