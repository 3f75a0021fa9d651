"""Prefill and selection time of the authors' releases and of this project's methods, side by side on one CPU thread
(a development tool, not run in CI).

Usage, in the release's environment (torch 2.8, transformers 4.57.1), then where `seats(..., compiled=True)` runs
(torch >= 2.14; `seats_analysis.pre_llm.CAN_COMPILE`):

    PYTHONPATH=. OMP_NUM_THREADS=1 /work/venv-release/bin/python dev/release_speed.py \\
        --seats /work/release/SEATS --omnizip /work/release/OmniZip --dycoke /work/release/DyCoke
    PYTHONPATH=. OMP_NUM_THREADS=1 /work/venv-rel214/bin/python dev/release_speed.py \\
        --seats /work/release/SEATS --omnizip /work/release/OmniZip --dycoke /work/release/DyCoke

Options: --repeats N (timed prefills per side, default 7), --seconds S (clip length, default 20: ten 2-second
windows), --methods seats,omnizip,dycoke-om, --out PREFIX (default data/benchmarks/release_side_by_side).
Each run replaces its own environment's rows (same torch and transformers) in PREFIX.csv and rewrites PREFIX.md from
all rows, so the two runs above give one table.

The thinker is `tiny_thinker('qwen2_5', num_layers=12, seed=0, portable=True)` on both sides, float32, SDPA in the
decoder; the clip is `seats_analysis.bench.clip_inputs(seconds)` (a synthetic clip with its audio, 2 fps, 112x112).
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
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release_dycoke import kept_indices, release_function  # noqa: E402
from release_forwards import (FORWARD_SCHEDULE, Recorder, boundaries, config_file, kinds_of, load_release,  # noqa: E402
                              release_thinker, varlen_attention)
from release_omnizip import RELEASE_DEFAULTS, SETTINGS as OMNIZIP_SETTINGS, release_method  # noqa: E402
from release_positions import COMMIT as SEATS_COMMIT, NUM_LAYERS, THINKER_SEED  # noqa: E402

from seats_analysis.bench import clip_inputs  # noqa: E402
from seats_analysis.compat import multimodal_model, text_model  # noqa: E402
from seats_analysis.harness import RATIO_PAIRS, Scored, run_samples  # noqa: E402
from seats_analysis.layout import Kind, temporal_windows, token_id, token_kinds  # noqa: E402
from seats_analysis.methods import METHODS  # noqa: E402
from seats_analysis.pre_llm import CAN_COMPILE  # noqa: E402
from seats_analysis.results import markdown_table  # noqa: E402
from seats_analysis.stand_ins import tiny_thinker  # noqa: E402
from seats_analysis.testing import tiny_schedule  # noqa: E402

FAMILY = "qwen2_5"
COMMITS = {"seats": SEATS_COMMIT, "omnizip": "66ef5d7f2b7201841505bb45ef6b5b4c5bf99ca8 (omnizip_core.py; the audio "
           "attention of modeling_qwen2_5_omni.py)", "dycoke-om": "dd7463498203479d0ff6f2d29c4e72928c0af244"}
DYCOKE_SETTINGS = {"k0.7 (release)": 0.7, "k0.5": 0.5, "k0.3": 0.3}  # merging ratios of dev/release_dycoke.py's cases
SEATS_TIMED = ("video_windivprune", "audio_windivprune", "top_down_token_selection", "remove_non_textual_tokens")


class Clock:
    "Seconds spent inside wrapped functions, summed until `reset`."

    def __init__(self):
        self.seconds = 0.0

    def reset(self):
        self.seconds = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        timed.__wrapped__ = function
        return timed


def scorer(thinker, inputs, use_audio_in_video: bool = True) -> Scored:
    "One prefill, nothing read from it."
    thinker(**inputs, use_audio_in_video=use_audio_in_video)
    return Scored([])


def ours(thinker, method, schedule, targets, inputs) -> tuple[float, float, dict]:
    "(prefill s, selection s, kept original positions per boundary) of one prefill of this project's `method`."
    [sample] = run_samples(thinker, [inputs], scorer, method, schedule, *targets)
    run = sample.result.run
    kept = {str(event.k): event.kept[0][event.kept[0] >= 0].tolist() for event in run.events[0].events}
    return run.latency.total, run.latency.selection, kept


def release_prefill(model, inputs) -> float:
    "Wall-clock seconds of one prefill of the release's (or the release-driven) thinker."
    start = time.perf_counter()
    model(**inputs, use_audio_in_video=True)
    return time.perf_counter() - start


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


def seats_side(checkout: Path, inputs, repeats: int, compiled: bool) -> list[dict]:
    "SEATS: the release's patched thinker and this project's, at every RATIO_PAIRS setting."
    modeling, patched, dispatch, _ = load_release(checkout)
    clock = Clock()
    for module in patched:  # timed first, recorded around the timer (the mask copies are not timed)
        for name, function in list(vars(module).items()):
            if callable(function) and name.removesuffix("_qwen3") in SEATS_TIMED:
                setattr(module, name, clock.wrap(function))
    recorder = Recorder(patched)
    statistic = Clock()
    thinker = tiny_thinker(FAMILY, num_layers=NUM_LAYERS, seed=THINKER_SEED, portable=True)
    schedule = tiny_schedule(FAMILY, **FORWARD_SCHEDULE)
    kinds = kinds_of(inputs["input_ids"][0], thinker.config)
    folder = Path(tempfile.mkdtemp())
    rows = []
    for setting, targets in RATIO_PAIRS.items():
        stand_in = release_thinker(FAMILY, modeling, thinker)
        dispatch(stand_in, "seats", *targets, config_file(checkout, "seats", folder), pretrained="tiny")
        for attention in last_encoder_attentions(stand_in.thinker):
            time_instance_forward(attention, statistic)
        sides = {"release": partial(release_prefill, stand_in.thinker, inputs),
                 "eager": partial(ours, thinker, METHODS["seats"], schedule, targets, inputs)}
        if compiled:
            sides["compiled"] = partial(ours, thinker, partial(METHODS["seats"], compiled=True), schedule, targets,
                                        inputs)
        with torch.no_grad():
            recorder.clear()
            sides["release"]()  # warm-up (and the release's kept positions)
            release_kept = {k: v["kept_all"] for k, v in boundaries("seats", recorder, kinds).items()}
            kept = {name: side()[2] for name, side in sides.items() if name != "release"}  # warm-up (compiles)
            times = interleave(sides, repeats, [clock, statistic])
        cuts, previous = {}, None  # the release's boundaries where it cut
        for k in sorted(release_kept, key=int):
            if release_kept[k] != previous:
                cuts[k] = previous = release_kept[k]
        rows.append(row("seats", setting, f"video {targets[0]}, audio {targets[1]}", times,
                        {name: value == cuts for name, value in kept.items()}))
    return rows


def interleave(sides: dict, repeats: int, clocks: list[Clock]) -> dict:
    "Per side, lists of (prefill s, selection s [, statistic layers s]): the sides in turn, in rotated order, `repeats` times."
    times = {name: [] for name in sides}
    names = list(sides)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            for clock in clocks:
                clock.reset()
            out = sides[name]()
            if name == "release":
                times[name].append((out, *(clock.seconds for clock in clocks)))
            else:
                times[name].append(out[:2])
    return times


def row(method: str, setting: str, settings: str, times: dict, same: dict) -> dict:
    "One table row from the timed prefills."
    def median(name, i):
        return statistics.median(t[i] for t in times[name]) if name in times else float("nan")
    release_prefill_s, release_selection_s = median("release", 0), median("release", 1)
    statistic_s = median("release", 2) if len(times["release"][0]) > 2 else 0.0
    out = dict(method=method, setting=setting, settings=settings,
               release_prefill_s=release_prefill_s, ours_eager_prefill_s=median("eager", 0),
               ours_compiled_prefill_s=median("compiled", 0))
    out["eager_over_release_prefill"] = out["ours_eager_prefill_s"] / release_prefill_s
    out["compiled_over_release_prefill"] = out["ours_compiled_prefill_s"] / release_prefill_s
    out.update(release_selection_ms=1e3 * release_selection_s, release_statistic_layers_ms=1e3 * statistic_s,
               ours_eager_selection_ms=1e3 * median("eager", 1), ours_compiled_selection_ms=1e3 * median("compiled", 1))
    out["eager_over_release_selection"] = out["ours_eager_selection_ms"] / out["release_selection_ms"]
    out["compiled_over_release_selection"] = out["ours_compiled_selection_ms"] / out["release_selection_ms"]
    out["same_kept_eager"] = same.get("eager")
    out["same_kept_compiled"] = same.get("compiled")
    return out


def omnizip_side(checkout: Path, inputs, repeats: int) -> list[dict]:
    "OmniZip: the release's saliency attention and `omnizip` on the stock thinker, and this project's, at the recorder's settings."
    sys.path.insert(0, str(checkout))
    from omnizip.omnizip_core import omnizip as release_omnizip
    clock, statistic = Clock(), Clock()
    selection = clock.wrap(release_omnizip)
    thinker = tiny_thinker(FAMILY, num_layers=NUM_LAYERS, seed=THINKER_SEED, portable=True)
    schedule = tiny_schedule(FAMILY, **FORWARD_SCHEDULE)
    release = tiny_thinker(FAMILY, num_layers=NUM_LAYERS, seed=THINKER_SEED, portable=True)  # hooks of the release
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
        cuts = Cuts(release, select)
        method = partial(METHODS["omnizip"], **settings)
        targets = (1 - settings["rho_video"], 1 - settings["rho_audio"])
        sides = {"release": partial(release_prefill, release, inputs),
                 "eager": partial(ours, thinker, method, schedule, targets, inputs)}
        with torch.no_grad():
            sides["release"]()
            kept = sides["eager"]()[2]
            times = interleave(sides, repeats, [clock, statistic])
        for handle in cuts.handles:
            handle.remove()
        rows.append(row("omnizip", setting, ", ".join(f"{k} {v}" for k, v in settings.items()), times,
                        {"eager": kept.get("0") == cuts.kept}))
    return rows


def dycoke_side(checkout: Path, inputs, repeats: int) -> list[dict]:
    "DyCoke: the release's temporal merging on the stock thinker's video grids and audio windows, and dycoke-om."
    function, recording = release_function(checkout)
    clock = Clock()
    merge = clock.wrap(function)
    thinker = tiny_thinker(FAMILY, num_layers=NUM_LAYERS, seed=THINKER_SEED, portable=True)
    schedule = tiny_schedule(FAMILY, **FORWARD_SCHEDULE)
    release = tiny_thinker(FAMILY, num_layers=NUM_LAYERS, seed=THINKER_SEED, portable=True)
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
        cuts = Cuts(release, select)
        method = partial(METHODS["dycoke-om"], merging_ratio=ratio)
        sides = {"release": partial(release_prefill, release, inputs),
                 "eager": partial(ours, thinker, method, schedule, (1.0, 1.0), inputs)}
        with torch.no_grad():
            sides["release"]()
            kept = sides["eager"]()[2]
            times = interleave(sides, repeats, [clock])
        for handle in cuts.handles:
            handle.remove()
        rows.append(row("dycoke-om", setting, f"merging_ratio {ratio}", times, {"eager": kept.get("0") == cuts.kept}))
    return rows


def machine() -> str:
    "The CPU's model name."
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


COLUMNS = ["method", "setting", "torch", "transformers", "release_prefill_s", "ours_eager_prefill_s",
           "ours_compiled_prefill_s", "eager_over_release_prefill", "compiled_over_release_prefill",
           "release_selection_ms", "release_statistic_layers_ms", "ours_eager_selection_ms",
           "ours_compiled_selection_ms", "eager_over_release_selection", "compiled_over_release_selection",
           "same_kept_eager", "same_kept_compiled", "settings", "tokens", "windows", "repeats", "threads", "cpu"]


def describe(table: pd.DataFrame, seconds: float) -> str:
    "The Markdown page: the setup, what each column measures, the table."
    first = table.iloc[0]
    environments = "; ".join(f"torch {t}, transformers {v}" for t, v in table[["torch", "transformers"]].drop_duplicates()
                             .itertuples(index=False))
    setup = (
        f"Clip: `seats_analysis.bench.clip_inputs({seconds:g})`, a synthetic {seconds:g}-second clip (2 fps, 112x112, "
        f"with its audio): {first.tokens} tokens, {first.windows} temporal windows. Thinker: `tiny_thinker('{FAMILY}', "
        f"num_layers={NUM_LAYERS}, seed={THINKER_SEED}, portable=True)` (hidden 64), float32, SDPA in the decoder, on "
        f"both sides; SEATS' schedule {FORWARD_SCHEDULE} on both sides. Machine: {first.cpu}, {first.threads} thread "
        f"(`torch.set_num_threads(1)`), shared with other work. Environments: {environments} (each row names its "
        "own). Releases: SEATS `xxayt/SEATS` " + COMMITS["seats"] + ", OmniZip `KD-TAO/OmniZip` " + COMMITS["omnizip"]
        + ", DyCoke `KD-TAO/DyCoke` " + COMMITS["dycoke-om"] + ". Every number is the median of "
        f"{first.repeats} prefills; the release's and this project's prefills of a row alternate in one loop (the "
        "order rotated each round), after one untimed prefill of each. Written by `dev/release_speed.py`.")
    columns = (
        "- `release_prefill_s`: wall-clock seconds of one thinker call (encoders, selection, decoder) of the release: "
        "for SEATS its own patched thinker class; for OmniZip and DyCoke the stock thinker with the release's functions "
        "on the LLM input (see the script's docstring).\n"
        "- `ours_eager_prefill_s`, `ours_compiled_prefill_s`: `PruningRun.latency.total` of this project's method (the "
        "same thinker call, timed by the run's clock), without and with `compiled=True` (SEATS only; empty where "
        "`seats_analysis.pre_llm.CAN_COMPILE` is false, torch < 2.14). `*_over_release_prefill`: ours / release.\n"
        "- `release_selection_ms`: time inside the release's selection functions, wrapped with a timer from the "
        "outside at run time. SEATS: `video_windivprune`, `audio_windivprune` (Stage I), `top_down_token_selection` "
        "(Stage II, its last-token attention scores included) and `remove_non_textual_tokens` (Stage III); "
        "OmniZip: `omnizip` (audio selection and merging, video per window); DyCoke: `dycole_ttm` on the video and on "
        "the audio. Not included: the encoder statistics the releases compute inline in their patched attention "
        "forwards (SEATS: the last vision block's and last audio layer's attention; OmniZip: the audio saliency), "
        "which are in `release_statistic_layers_ms`: the whole forward of those attention modules, their attention "
        "included, so an upper bound of the statistic's cost.\n"
        "- `ours_*_selection_ms`: `PruningRun.latency.selection`: the encoder statistic (computed by hooks, not the "
        "attention itself) and the selectors with their cuts. `*_over_release_selection`: ours / `release_selection_ms`; "
        "ours also counts the statistic, so against the release's functions alone the ratio is an upper bound.\n"
        "- `same_kept_*`: whether this project's run kept the release's original positions at every boundary where "
        "the release cut (SEATS), or entering the first layer (OmniZip, DyCoke).")
    shown = table[COLUMNS[:-4]].copy()
    for column in shown.columns:
        shown[column] = shown[column].map(lambda x: "" if x is None or (isinstance(x, float) and pd.isna(x))
                                          else f"{x:.4g}" if isinstance(x, float) else str(x))
    return (f"# The releases and this project side by side\n\n{setup}\n\n{columns}\n\n"
            f"{markdown_table(shown)}\n")


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
    rows = []
    if "seats" in methods:
        rows += seats_side(args.seats, inputs, args.repeats, CAN_COMPILE)
    if "omnizip" in methods:
        rows += omnizip_side(args.omnizip, inputs, args.repeats)
    if "dycoke-om" in methods:
        rows += dycoke_side(args.dycoke, inputs, args.repeats)
    new = pd.DataFrame(rows).assign(torch=torch.__version__, transformers=transformers.__version__, tokens=len(kinds),
                                    windows=windows, repeats=args.repeats, threads=torch.get_num_threads(), cpu=machine())
    csv = args.out.with_suffix(".csv")
    if csv.exists():
        old = pd.read_csv(csv)
        here = (old.torch == torch.__version__) & (old.transformers == transformers.__version__)
        new = pd.concat([old[~here], new], ignore_index=True)
    table = new[COLUMNS]
    csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False)
    page = describe(table, args.seconds)
    args.out.with_suffix(".md").write_text(page)
    print(page)


if __name__ == "__main__":
    main()
