"""Record what the authors' release keeps on this project's tiny thinkers (a development tool, not run in CI).

Usage: python dev/release_positions.py /path/to/SEATS-checkout [out.json]

For each family (Qwen2.5-Omni, Qwen3-Omni), clip, method and setting, this project's method runs once on a tiny
random-weight thinker of `seats_analysis.testing` (float32, CPU), and at every boundary where it selects, the
state it was given is handed to the release's own selection functions, loaded at run time from the checkout:
`baselines/random/random_units.py`, `baselines/fastv/fastv_units.py`, `baselines/visionzip/visionzip_units.py`,
`baselines/utils.py` (audio-intact reallocation), `seats/pre_llm_units.py` (Stage I), `seats/inner_llm_units.py`
(Stage II) and `seats/ratio_decay_scheduler.py`. What the release keeps is written as original positions per
boundary. The release computes the scores these functions rank by inside its patched model forwards (the last
token's attention recomputed with a decoder layer's weights; the encoder's windowed attention and keys); here
they are the ones this project computed on the same state, so the recording checks the release's counting,
budgeting, windowing, ranking and merging, not its attention arithmetic (dev/release_forwards.py runs the release's
own forwards end to end for that). Random draws from torch's global generator in the release, so only its counts are
recorded. Nothing of the release is copied here.

Usage: python dev/release_positions.py /path/to/SEATS-checkout --stage-two [out.json]

writes `data/fixtures/release/stage_two.json` instead: every Stage II state of SEATS' runs above (the positions that
enter the drop, their kinds and this project's scores, the release's keep ratios for the drop) with the positions the
release's Stage II keeps from it. A test replays each state through this project's Stage II alone, so the budget is
checked at every drop even where near-ties upstream (Stage I on Qwen3) make the whole runs part.
"""
import importlib
import importlib.util
import json
import logging
import subprocess
import sys
import types
from pathlib import Path

import torch

import seats_analysis.baselines as baselines
import seats_analysis.seats as seats_module
from seats_analysis.inner_llm import query_relevance
from seats_analysis.layout import Kind, token_kinds
from seats_analysis.methods import METHODS
from seats_analysis.engine import last_token_index
from seats_analysis.schedule import RELEASE_QWEN3_SETTINGS
from seats_analysis.testing import clip_batch, tiny_schedule
from seats_analysis.stand_ins import FAMILIES, tiny_thinker, weights_checksum

COMMIT = "c553732cc472321f0c575ecc6369a32c1c1fd2df"
SETTINGS = {"R35": (0.30, 0.65), "R25": (0.20, 0.55), "R15": (0.10, 0.45), "R10": (0.06, 0.35)}
NUM_LAYERS = 12
CLIP_SECONDS = (5, 3)  # partial last windows: 5 s of video in 2 s windows, 125 and 75 audio tokens in windows of 50
SCHEDULE = dict(num_layers=NUM_LAYERS, middle_block_layer=4, late_block_layer=10, drop_layers=[4, 6, 8, 9])
RELEASE_NAMES = {"random": "random", "fastv": "fastv", "fastv-om": "fastv_omni", "visionzip": "visionzip",
                 "visionzip-om": "visionzip_omni", "seats": "seats"}
THINKER_SEED = 0
QWEN3_SETTINGS = RELEASE_QWEN3_SETTINGS
PRUNING = seats_module.pruning  # this project's, wrapped below to record what the selectors see


def fixture_schedule(family: str):
    "The 12-layer tiny schedule the fixtures use (Qwen3: the release's audio window constants and temperature)."
    return tiny_schedule(family, **SCHEDULE, **QWEN3_SETTINGS if family == "qwen3" else {})


def load(checkout: Path, relative: str):
    "Import one file of the checkout as a module (its package __init__ files, which patch models, are skipped)."
    spec = importlib.util.spec_from_file_location(relative.replace("/", "_")[:-3], checkout / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def release_modules(checkout: Path) -> dict:
    sys.modules.setdefault("loguru", types.SimpleNamespace(logger=logging.getLogger("release")))  # baselines/utils.py logs
    sys.path.insert(0, str(checkout))  # so that `from baselines.utils import ...` resolves
    names = {"utils": "baselines/utils.py", "random": "baselines/random/random_units.py",
             "fastv": "baselines/fastv/fastv_units.py", "visionzip": "baselines/visionzip/visionzip_units.py",
             "pre": "seats/pre_llm_units.py", "inner": "seats/inner_llm_units.py",
             "scheduler": "seats/ratio_decay_scheduler.py"}
    modules = {name: load(checkout, path) for name, path in names.items()}
    modules["inner_qwen3"] = importlib.import_module("seats.inner_llm_units_qwen3")  # relative imports: as a package
    return modules


def capture(log: list):
    "A replacement for `pruning` that records each selector's input state and output."
    def recording_pruning(thinker, method, make_selectors, statistic=None, **kwargs):
        def make(recorder=None):
            selectors = make_selectors(recorder)

            def wrap(k, selector):
                def run(state):
                    pad = state.padding_mask
                    entry = {"k": k, "kinds": state.kinds[0].clone(), "index": state.original_index[0].clone(),
                             "hidden": state.hidden_states.clone()}
                    if k > 0:
                        entry["scores"] = query_relevance(state.hidden_states, state.layers[k - 1],
                                                          state.position_embeddings, last_token_index(pad), pad)[0]
                    elif recorder is not None:
                        entry["statistic"] = recorder.current.scores()[0].clone()
                        if recorder.current.keys:
                            entry["keys"] = recorder.current.key_features()[0].clone()
                    keep = selector(state)
                    entry["keep"] = keep[0].clone()
                    entry["merged"] = state.hidden_states[0].clone()
                    log.append(entry)
                    return keep
                return run
            return {k: wrap(k, selector) for k, selector in selectors.items()}
        return PRUNING(thinker, method, make, statistic, **kwargs)
    return recording_pruning


def ids_of(kinds: torch.Tensor, config) -> torch.Tensor:
    "input_ids (1, S) with the video and audio placeholder ids where `kinds` has them."
    ids = torch.zeros_like(kinds)
    ids[kinds == Kind.VIDEO] = config.video_token_id
    ids[kinds == Kind.AUDIO] = config.audio_token_id
    return ids[None]


def kept(entry, mask) -> list[int]:
    return entry["index"][mask].tolist()


def release_boundary(name, entry, modules, family, thinker, inputs, targets, plan):
    "What the release keeps given this boundary's state: original positions (or counts for Random)."
    config = thinker.config
    kinds, S = entry["kinds"], len(entry["kinds"])
    video, audio = kinds == Kind.VIDEO, kinds == Kind.AUDIO
    text = ~video & ~audio
    nv, na = int(video.sum()), int(audio.sum())
    vr, ar = targets
    ids = ids_of(kinds, config)
    if name == "random":
        v = modules["random"].global_video_random(ids, config.video_token_id, vr, {"device": "cpu"})
        a = modules["random"].global_audio_random(ids, config.audio_token_id, ar, {"device": "cpu"})
        return {"video_count": int(v[video].sum()), "audio_count": int(a[audio].sum())}
    if name.startswith("fastv"):
        sv, sa = modules["fastv"].avg_ratio_to_fastv_setting_ratio(vr, ar, 2, NUM_LAYERS)
        if name == "fastv":
            sv, sa = modules["utils"].audio_intact_reallocate(sv, sa, nv, na)
        scores = entry["scores"]
        modules["fastv"].compute_last_token_attention_importance = (
            lambda hidden_states, decoder_layer, position_embeddings, target_mask, text_token_mask: scores[target_mask])
        ones = torch.ones(3, 1, S, 1)
        out = modules["fastv"].fastv_global_drop_tokens(
            entry["hidden"], None, torch.zeros(3, 1, S, dtype=torch.long), (ones, ones), torch.arange(S), None,
            1, [None] * NUM_LAYERS, {"method_name": RELEASE_NAMES[name], "video_ratio": sv, "audio_ratio": sa,
                                     "fastv_k": 2}, audio, text, video)
        keep = out[-1]
        result = {"kept": kept(entry, keep)}
        if name == "fastv":  # the release drops audio at random: only the count is its
            result = {"kept_video": kept(entry, keep & video), "audio_count": int((keep & audio).sum())}
        return result
    if name.startswith("visionzip"):
        hidden = entry["hidden"].clone()
        if name == "visionzip":
            vr, ar = modules["utils"].audio_intact_reallocate(vr, ar, nv, na)
        stat, keys = entry["statistic"], entry["keys"]
        hidden, vmask = modules["visionzip"].video_visionzip(
            hidden, ids, stat[video], keys[video][None], config.video_token_id, vr, 0.05, grid_in_window=1,
            spatial_merge_unit=4, video_grid_thw=inputs["video_grid_thw"])
        if name == "visionzip-om":
            hidden, amask = modules["visionzip"].audio_visionzip(
                hidden, ids, stat[audio], keys[audio][None], config.audio_token_id, ar, 0.05, sec_in_audio_window=2)
            keep = vmask & amask
            return {"kept": kept(entry, keep), "merged_sum": float(hidden[0][keep].double().sum())}
        return {"kept_video": kept(entry, vmask & video), "audio_count": na if ar >= 1 else max(int(ar * na), 1),
                "merged_video_sum": float(hidden[0][vmask & video].double().sum())}
    # SEATS
    if entry["k"] == 0:
        hidden = entry["hidden"]
        stat = entry["statistic"]
        _, vmask = modules["pre"].video_windivprune(hidden, ids, stat[video], config.video_token_id, vr * 1.4, 4,
                                                    inputs["video_grid_thw"], grid_in_window=2)
        _, amask = modules["pre"].audio_windivprune(hidden, ids, stat[audio], config.audio_token_id, ar * 1.4,
                                                    sec_in_audio_window=2)
        return {"kept": kept(entry, vmask & amask)}
    scores = entry["scores"]
    if family == "qwen3":  # the release's Qwen3 Stage II (its own temperature, Qwen3's rotary layout)
        modules["inner_qwen3"].compute_last_token_qk_scores_full_qwen3 = lambda **kwargs: scores
        select, ones = modules["inner_qwen3"].top_down_token_selection_qwen3, torch.ones(1, S, 1)
    else:
        modules["inner"].compute_last_token_qk_scores_full = lambda **kwargs: scores
        select, ones = modules["inner"].top_down_token_selection, torch.ones(3, 1, S, 1)
    keep = select(
        entry["hidden"], None, torch.zeros(3, 1, S, dtype=torch.long), (ones, ones), torch.arange(S), None,
        entry["k"] - 1, [None] * NUM_LAYERS, {"drop_layers": SCHEDULE["drop_layers"],
                                              "video_keep_ratio_list": plan["video_inner_progressive_ratio_list"],
                                              "audio_keep_ratio_list": plan["audio_inner_progressive_ratio_list"]},
        audio, text, video)[-1]
    if entry["k"] == SCHEDULE["late_block_layer"] - 1:  # the release removes every multimodal token here
        keep = keep & text
    return {"kept": kept(entry, keep)}


def logged_run(thinker, schedule, inputs, name: str, targets) -> list:
    "This project's method `name` run once on `inputs`, with what each of its selectors was given and kept (`capture`)."
    log = []
    seats_module.pruning, baselines.pruning = capture(log), capture(log)
    try:
        with torch.no_grad(), METHODS[name](thinker, schedule, *targets):
            thinker(**inputs, use_audio_in_video=True)
    finally:
        seats_module.pruning = baselines.pruning = PRUNING
    return log


def release_plan(modules, targets) -> dict:
    "The release's SEATS plan (its keep ratio lists) for the (video, audio) targets on the fixture schedule."
    return modules["scheduler"].block_wise_ratio_decay_schedule(
        "tiny", targets[0], targets[1], targets[0] * 1.4, targets[1] * 1.4,
        "-".join(map(str, SCHEDULE["drop_layers"])), SCHEDULE["late_block_layer"])


def stage_two_states(modules, family: str, thinker, seconds, setting: str, targets) -> list[dict]:
    """Every Stage II state of one SEATS run, with the keep ratios the release uses at that drop and the original
    positions its Stage II keeps from the state."""
    schedule = fixture_schedule(family)
    inputs = clip_batch(family, seconds=(seconds,))
    plan = release_plan(modules, targets)
    states = []
    with torch.no_grad():
        for entry in logged_run(thinker, schedule, inputs, "seats", targets):
            k = entry["k"]
            if not 0 < k < SCHEDULE["late_block_layer"] - 1:  # Stage I and the late removal are not Stage II
                continue
            step = SCHEDULE["drop_layers"].index(k)
            kept = release_boundary("seats", entry, modules, family, thinker, inputs, targets, plan)["kept"]
            states.append({"family": family, "clip_seconds": seconds, "setting": setting, "k": k,
                           "video_keep_ratio": plan["video_inner_progressive_ratio_list"][step],
                           "audio_keep_ratio": plan["audio_inner_progressive_ratio_list"][step],
                           "index": entry["index"].tolist(),
                           "kinds": "".join(str(int(kind)) for kind in entry["kinds"].tolist()),
                           "scores": entry["scores"].float().tolist(), "kept": kept})
    return states


# Constructed Stage II states on the clips' layouts: the tiny thinkers' scores are nearly uniform, so their window
# means differ by far less than the temperature and the windows' weights by little; these scores are peaked (a
# softmax of SPREAD x N(0, 1) over the row), so that the weights, and with them the budgets, follow the window means.
CONSTRUCTED_SEEDS = (0, 1, 2, 3)
CONSTRUCTED_SPREAD = 4.0
CONSTRUCTED_KEEP_RATIOS = [(0.8, 0.7), (0.6, 0.5), (0.5, 0.4)]  # (video, audio) at drop layers 4, 6 and 8


def constructed_states(modules, family: str, thinker, seconds, seed: int) -> list[dict]:
    """Three drops chained through the release's Stage II on the layout of a clip of `seconds`: each drop draws new
    scores for the positions the release kept at the drop before (torch.Generator seeded `seed`)."""
    input_ids = clip_batch(family, seconds=(seconds,))["input_ids"][0]
    kinds = token_kinds(input_ids[None], thinker.config)[0]
    index = torch.arange(len(kinds))
    generator = torch.Generator().manual_seed(seed)
    drops = SCHEDULE["drop_layers"][:len(CONSTRUCTED_KEEP_RATIOS)]
    plan = {"video_inner_progressive_ratio_list": [kv for kv, _ in CONSTRUCTED_KEEP_RATIOS],
            "audio_inner_progressive_ratio_list": [ka for _, ka in CONSTRUCTED_KEEP_RATIOS]}
    states = []
    for k, (kv, ka) in zip(drops, CONSTRUCTED_KEEP_RATIOS):
        scores = torch.softmax(CONSTRUCTED_SPREAD * torch.randn(len(index), generator=generator), 0)
        entry = {"k": k, "kinds": kinds[index], "index": index, "hidden": torch.zeros(1, len(index), 4),
                 "scores": scores}
        with torch.no_grad():
            kept = release_boundary("seats", entry, modules, family, thinker, None, (kv, ka), plan)["kept"]
        states.append({"family": family, "clip_seconds": seconds, "setting": f"constructed seed {seed}", "k": k,
                       "video_keep_ratio": kv, "audio_keep_ratio": ka, "index": index.tolist(),
                       "kinds": "".join(str(int(kind)) for kind in entry["kinds"].tolist()),
                       "scores": scores.tolist(), "kept": kept})
        index = torch.tensor(kept)
    return states


def main_stage_two(checkout: Path, out: Path):
    "Write the Stage II states of SEATS' runs and what the release's Stage II keeps from each (see the docstring)."
    import transformers
    torch.set_num_threads(1)
    modules = release_modules(checkout)
    modules["scheduler"]._MODEL_NUM_LAYERS["tiny"] = NUM_LAYERS
    states, checksums = [], {}
    for family in FAMILIES:
        thinker = tiny_thinker(family, num_layers=NUM_LAYERS, seed=THINKER_SEED, portable=True)
        checksums[family] = weights_checksum(thinker)
        for seconds in CLIP_SECONDS:
            for setting, targets in SETTINGS.items():
                states += stage_two_states(modules, family, thinker, seconds, setting, targets)
            for seed in CONSTRUCTED_SEEDS:
                states += constructed_states(modules, family, thinker, seconds, seed)
            print(family, seconds, "done", flush=True)
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    header = {
        "source": "xxayt/SEATS: seats/inner_llm_units.py top_down_token_selection (Qwen2.5-Omni), "
                  "seats/inner_llm_units_qwen3.py top_down_token_selection_qwen3 (Qwen3-Omni), "
                  "seats/ratio_decay_scheduler.py for the keep ratios",
        "commit": commit or COMMIT,
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__},
        "recipe": (f"SEATS run by this project on seats_analysis.stand_ins.tiny_thinker(family, num_layers={NUM_LAYERS}, "
                   f"seed={THINKER_SEED}, portable=True) in float32 on CPU, inputs clip_batch(family, seconds=(s,)) "
                   f"for s in {list(CLIP_SECONDS)}, the schedule and settings of positions.json. At each Stage II "
                   "drop k the state entering the drop (original positions `index`, their kinds as digits 0 text, "
                   "1 video, 2 audio, this project's query scores in float32) was handed to the release's Stage II "
                   "with the keep ratios its scheduler gives for that drop; `kept`: the original positions it keeps. "
                   f"States of setting 'constructed seed n': on the same clips' layouts, scores "
                   f"softmax({CONSTRUCTED_SPREAD} x N(0, 1)) drawn from torch.Generator().manual_seed(n), new ones "
                   f"for the survivors at each drop, keep ratios {CONSTRUCTED_KEEP_RATIOS} at drops 4, 6, 8 chained "
                   "through the release's Stage II. See dev/release_positions.py."),
        "num_layers": NUM_LAYERS, "thinker_seed": THINKER_SEED, "weights_checksum": checksums, "schedule": SCHEDULE,
        "qwen3_settings": QWEN3_SETTINGS, "settings": {name: list(ratios) for name, ratios in SETTINGS.items()},
        "constructed": {"seeds": list(CONSTRUCTED_SEEDS), "spread": CONSTRUCTED_SPREAD,
                        "keep_ratios": [list(ratios) for ratios in CONSTRUCTED_KEEP_RATIOS]}}
    lines = json.dumps(header, indent=1)[:-2] + ',\n "states": [\n'
    lines += ",\n".join(json.dumps(state, separators=(",", ":")) for state in states) + "\n ]\n}\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(lines)
    print(f"wrote {out}: {len(states)} states")


def main(checkout: Path, out: Path):
    torch.set_num_threads(1)
    modules = release_modules(checkout)
    modules["scheduler"]._MODEL_NUM_LAYERS["tiny"] = NUM_LAYERS
    records, checksums = [], {}
    for family in FAMILIES:
        thinker = tiny_thinker(family, num_layers=NUM_LAYERS, seed=THINKER_SEED, portable=True)
        checksums[family] = weights_checksum(thinker)
        schedule = fixture_schedule(family)
        for clip, seconds in enumerate(CLIP_SECONDS):
            inputs = clip_batch(family, seconds=(seconds,))
            for name in RELEASE_NAMES:
                for setting, targets in SETTINGS.items():
                    log = logged_run(thinker, schedule, inputs, name, targets)
                    plan = release_plan(modules, targets)
                    boundaries = {}
                    with torch.no_grad():
                        for entry in log:
                            boundaries[str(entry["k"])] = release_boundary(name, entry, modules, family, thinker,
                                                                           inputs, targets, plan)
                    record = {"family": family, "clip_seconds": seconds, "method": name, "setting": setting,
                              "video_ratio": targets[0], "audio_ratio": targets[1], "boundaries": boundaries}
                    if name == "seats":
                        record["keep_ratios"] = {"video": plan["video_inner_progressive_ratio_list"],
                                                 "audio": plan["audio_inner_progressive_ratio_list"]}
                    records.append(record)
            print(family, seconds, "done", flush=True)
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    out.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "source": "xxayt/SEATS: baselines/{random,fastv,visionzip}/*_units.py, baselines/utils.py, "
                  "seats/{pre_llm_units,inner_llm_units,inner_llm_units_qwen3,ratio_decay_scheduler}.py",
        "commit": commit or COMMIT,
        "recipe": (f"seats_analysis.stand_ins.tiny_thinker(family, num_layers={NUM_LAYERS}, seed={THINKER_SEED}, portable=True) "
                   f"in float32 on CPU; inputs clip_batch(family, seconds=(s,)) for s in {list(CLIP_SECONDS)} "
                   "(synthetic clip seed 0, batch of one); schedule tiny_schedule(family, **schedule) with the "
                   "release's audio window constants and Stage II temperature for Qwen3; settings (video, audio) as in each record. At "
                   "every boundary where this project's method selects, its state was handed to the release's "
                   "selection functions (see dev/release_positions.py for what is the release's and what is this "
                   "project's). Positions are original input indices."),
        "num_layers": NUM_LAYERS, "thinker_seed": THINKER_SEED, "weights_checksum": checksums, "schedule": SCHEDULE,
        "qwen3_settings": QWEN3_SETTINGS}
    lines = json.dumps(header, indent=1)[:-2] + ',\n "records": [\n'
    lines += ",\n".join(json.dumps(record, separators=(",", ":")) for record in records) + "\n ]\n}\n"
    out.write_text(lines)
    print(f"wrote {out}: {len(records)} records")


if __name__ == "__main__":
    here = Path(__file__).resolve().parents[1] / "data/fixtures/release"
    checkout, rest = Path(sys.argv[1]), sys.argv[2:]
    if rest[:1] == ["--stage-two"]:
        main_stage_two(checkout, Path(rest[1]) if len(rest) > 1 else here / "stage_two.json")
    else:
        main(checkout, Path(rest[0]) if rest else here / "positions.json")
