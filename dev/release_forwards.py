"""Run the authors' release (`xxayt/SEATS`) end to end on this project's tiny thinkers and record what it keeps and
the prefill logits it gives (a development tool, not run in CI; run it in an environment with the release's pins,
transformers 4.57.1 and torch 2.8).

Usage: python dev/release_forwards.py /path/to/SEATS-checkout [out.json]

The release ships its own copies of the Qwen-Omni modeling files (`models/`) and patches their forwards with the
methods' entry points (`seats.seats`, `baselines.fastv.fastv`, ... `baselines.random.random`), which want the full
Qwen-Omni model. Here, from the checkout, at run time:
- the release's thinker class is built from `seats_analysis.stand_ins.tiny_thinker_config` with SDPA attention in the
  decoder, and given the weights of `tiny_thinker(..., portable=True)`, so the same thinker under any transformers;
- its vision and audio encoder attention modules are given the release's flash-attention classes (the ones its
  patches replace), and `flash_attn_varlen_func` is bound to plain PyTorch attention over the `cu_seqlens` chunks;
- the entry points are called on a stand-in of the full model class that holds only the thinker (no talker, so no
  speaker map is needed), exactly as the release's evaluation calls them, with the methods' settings from the
  release's `config.yaml` files and its ratio-decay scheduler for SEATS.
Each record has, per boundary k (0: entering layer 1; k: after k decoder layers), the original positions the release
kept (for Random and for the randomly dropped audio of plain FastV and VisionZip only the counts are the release's),
all kept positions of the run, and the float32 logits of the last position. Nothing of the release is copied here.

Usage: python dev/release_forwards.py /path/to/SEATS-checkout --qwen3-drops [out.json]

writes `data/fixtures/release/forwards_qwen3.json` instead: SEATS alone on an 8-layer Qwen3-Omni thinker with drops
after layers 4, 5 and 6 (every Stage II drop but the first sees a sequence already cut), on clips whose audio ends in
a partial Stage I window, at the processor's own frame rate and at 2 frames a second (one temporal window a second,
so more and shorter windows), at every setting.
"""
import dataclasses
import importlib
import json
import logging
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release_positions import (CLIP_SECONDS, COMMIT, NUM_LAYERS, QWEN3_SETTINGS, SCHEDULE, SETTINGS,  # noqa: E402
                               THINKER_SEED)

from seats_analysis.layout import Kind  # noqa: E402
from seats_analysis.testing import TEST_QUESTIONS, clip_batch  # noqa: E402
from seats_analysis.stand_ins import (FAMILIES, make_inputs, offline_processor, synthetic_clip, tiny_thinker,  # noqa: E402
                                      tiny_thinker_config, weights_checksum)

METHODS = {"seats": "seats", "random": "random", "fastv": "fastv", "fastv-om": "fastv_omni",
           "visionzip": "visionzip", "visionzip-om": "visionzip_omni"}  # this project's name: the release's
CONFIGS = {"seats": "seats/config.yaml", "random": None, "fastv": "baselines/fastv/config.yaml",
           "fastv_omni": "baselines/fastv_omni/config.yaml", "visionzip": "baselines/visionzip/config.yaml",
           "visionzip_omni": "baselines/visionzip_omni/config.yaml"}
# The release hands the scheduler's unfiltered drop layers to its forwards, which fail when a drop layer is
# late_block_layer - 1 (both cuts at one layer index the token masks of before the first); so no drop at layer 9 here.
FORWARD_SCHEDULE = dict(SCHEDULE, drop_layers=[d for d in SCHEDULE["drop_layers"] if d < SCHEDULE["late_block_layer"] - 1])
PRE_LLM = {"video_windivprune", "audio_windivprune", "video_visionzip", "audio_visionzip", "global_video_random",
           "global_audio_random"}
INNER_LLM = {"top_down_token_selection", "remove_non_textual_tokens", "fastv_global_drop_tokens"}
MODELING = {"qwen2_5": "models.qwen2_5_omni.modeling_qwen2_5_omni", "qwen3": "models.qwen3_omni_moe.modeling_qwen3_omni_moe"}
FULL_MODEL = {"qwen2_5": "Qwen2_5OmniForConditionalGeneration", "qwen3": "Qwen3OmniMoeForConditionalGeneration"}
THINKER = {"qwen2_5": "Qwen2_5OmniThinkerForConditionalGeneration", "qwen3": "Qwen3OmniMoeThinkerForConditionalGeneration"}
PATCHED = ["seats.modeling_qwen2_5_omni_seats", "seats.modeling_qwen3_omni_seats",
           "baselines.fastv.modeling_qwen2_5_omni_fastv", "baselines.fastv.modeling_qwen3_omni_fastv",
           "baselines.visionzip.modeling_qwen2_5_omni_visionzip", "baselines.visionzip.modeling_qwen3_omni_visionzip",
           "baselines.random.modeling_qwen2_5_omni_random", "baselines.random.modeling_qwen3_omni_random"]


def write_records(out: Path, header: dict, records: list[dict]):
    "A fixture file: the header's fields, then one record per line."
    lines = json.dumps(header, indent=1)[:-2] + ',\n "records": [\n'
    lines += ",\n".join(json.dumps(record, separators=(",", ":")) for record in records) + "\n ]\n}\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(lines)
    print(f"wrote {out}: {len(records)} records")


def varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, dropout_p=0.0,
                     softmax_scale=None, causal=False, **unused):
    "flash-attn's `flash_attn_varlen_func` in plain PyTorch: attention within each `cu_seqlens` chunk; (total, heads, dim)."
    out = torch.empty_like(q)
    bounds = zip(cu_seqlens_q[:-1].tolist(), cu_seqlens_q[1:].tolist(), cu_seqlens_k[:-1].tolist(), cu_seqlens_k[1:].tolist())
    for qs, qe, ks, ke in bounds:
        out[qs:qe] = F.scaled_dot_product_attention(q[qs:qe].transpose(0, 1), k[ks:ke].transpose(0, 1),
                                                    v[ks:ke].transpose(0, 1), scale=softmax_scale,
                                                    is_causal=causal).transpose(0, 1)
    return out


def rotary(x, cos, sin, interleaved=False, inplace=False, **unused):
    "flash-attn's `apply_rotary_emb` (non-interleaved) in plain PyTorch: x (batch, seq, heads, dim), cos/sin (seq, r/2)."
    assert not interleaved
    half = cos.shape[-1]
    cos, sin = cos[:, None, :], sin[:, None, :]
    x1, x2, rest = x[..., :half], x[..., half:2 * half], x[..., 2 * half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], dim=-1)


class Recorder:
    "Wraps the release's selection functions where its patched forwards call them, and records their keep masks."
    def __init__(self, modules):
        self.pre, self.inner = [], []
        for module in modules:
            for name, function in list(vars(module).items()):
                base = name.removesuffix("_qwen3")
                if callable(function) and (base in PRE_LLM or base in INNER_LLM):
                    setattr(module, name, self.wrap(base, function))

    def wrap(self, base, function):
        def recorded(*args, **kwargs):
            out = function(*args, **kwargs)
            mask = out if isinstance(out, torch.Tensor) else out[-1]
            if base in PRE_LLM:
                self.pre.append((base, mask.reshape(-1).clone()))
            else:
                self.inner.append((kwargs["layer_idx"], mask.reshape(-1).clone()))
            return out
        recorded.__wrapped__ = function
        return recorded

    def clear(self):
        self.pre, self.inner = [], []


def load_release(checkout: Path):
    "The release's modeling copies, patched-forward modules and entry points, imported from the checkout."
    sys.modules.setdefault("loguru", types.SimpleNamespace(logger=logging.getLogger("release")))  # baselines/utils.py logs
    sys.path.insert(0, str(checkout))
    modeling = {family: importlib.import_module(name) for family, name in MODELING.items()}
    patched = [importlib.import_module(name) for name in PATCHED]
    for module in [*modeling.values(), *patched]:
        if hasattr(module, "flash_attn_varlen_func"):
            module.flash_attn_varlen_func = varlen_attention
        if hasattr(module, "apply_rotary_emb"):
            module.apply_rotary_emb = rotary
    dispatch = importlib.import_module("baselines.utils").apply_zip_method_patch
    scheduler = importlib.import_module("seats.ratio_decay_scheduler")
    scheduler._MODEL_NUM_LAYERS["tiny"] = NUM_LAYERS
    return modeling, patched, dispatch, scheduler


def release_thinker(family, modeling, thinker):
    "The release's thinker class with `thinker`'s weights; encoder attention given the release's flash-attention classes."
    module = modeling[family]
    cls = getattr(module, THINKER[family])
    ours = thinker.config
    release = cls._from_config(tiny_thinker_config(family, num_layers=ours.get_text_config().num_hidden_layers),
                               attn_implementation="sdpa", dtype=torch.float32).eval()
    missing, unexpected = release.load_state_dict(thinker.state_dict(), strict=False)
    assert not unexpected and not [m for m in missing if "rotary" not in m], (missing, unexpected)
    if family == "qwen2_5":
        flash = {module.Qwen2_5OmniVisionSdpaAttention: module.Qwen2_5OmniVisionFlashAttention2,
                 module.Qwen2_5OmniAudioSdpaAttention: module.Qwen2_5OmniAudioFlashAttention2}
        for sub in release.modules():
            if type(sub) in flash:
                sub.__class__ = flash[type(sub)]
    full = getattr(module, FULL_MODEL[family])
    stand_in = full.__new__(full)
    torch.nn.Module.__init__(stand_in)
    stand_in.thinker, stand_in.config = release, release.config
    return stand_in


def config_file(checkout: Path, method: str, folder: Path, schedule: dict = FORWARD_SCHEDULE) -> Path | None:
    "The release's config.yaml of `method`, with the tiny thinker's SEATS layers."
    if CONFIGS[method] is None:
        return None
    config = yaml.safe_load((checkout / CONFIGS[method]).read_text())
    if method == "seats":
        config.update(progressive_drop_layers="-".join(map(str, schedule["drop_layers"])),
                      late_block_layer=schedule["late_block_layer"])
    path = folder / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def boundaries(name, recorder, kinds):
    "Kept original positions per boundary from the recorded keep masks."
    S = len(kinds)
    index = torch.arange(S)
    if recorder.pre:
        keep = torch.ones(S, dtype=torch.bool)
        for _, mask in recorder.pre:
            keep &= mask
        steps = [(0, keep)]
    else:
        steps = []
    steps += [(layer_idx + 1, mask) for layer_idx, mask in recorder.inner]
    out = {}
    for k, mask in steps:
        index = index[mask]
        kept = index.tolist()
        video = [i for i in kept if kinds[i] == Kind.VIDEO]
        audio = [i for i in kept if kinds[i] == Kind.AUDIO]
        if name == "random":
            entry = {"video_count": len(video), "audio_count": len(audio)}
        elif name in ("fastv", "visionzip"):  # their audio is dropped at random
            entry = {"kept_video": video, "audio_count": len(audio)}
        else:
            entry = {"kept": kept}
        entry["kept_all"] = kept
        out[str(k)] = {**out.get(str(k), {}), **entry}
    return out


def kinds_of(input_ids, config):
    kinds = torch.full_like(input_ids, int(Kind.TEXT))
    kinds[input_ids == config.video_token_id] = int(Kind.VIDEO)
    kinds[input_ids == config.audio_token_id] = int(Kind.AUDIO)
    return kinds.tolist()


def main(checkout: Path, out: Path):
    torch.set_num_threads(1)
    modeling, patched, dispatch, scheduler = load_release(checkout)
    folder = Path(tempfile.mkdtemp())
    recorder = Recorder(patched)
    records, checksums = [], {}
    for family in FAMILIES:
        thinker = tiny_thinker(family, num_layers=NUM_LAYERS, seed=THINKER_SEED, portable=True)
        checksums[family] = weights_checksum(thinker)
        for clip, seconds in enumerate(CLIP_SECONDS):
            inputs = clip_batch(family, seconds=(seconds,))
            kinds = kinds_of(inputs["input_ids"][0], thinker.config)
            for name in METHODS:
                for setting, targets in SETTINGS.items():
                    stand_in = release_thinker(family, modeling, thinker)
                    dispatch(stand_in, METHODS[name], *targets, config_file(checkout, METHODS[name], folder),
                             pretrained="tiny")
                    recorder.clear()
                    torch.manual_seed(0)
                    with torch.no_grad():
                        logits = stand_in.thinker(**inputs, use_audio_in_video=True, use_cache=False).logits
                    record = {"family": family, "clip_seconds": seconds, "method": name, "setting": setting,
                              "video_ratio": targets[0], "audio_ratio": targets[1],
                              "boundaries": boundaries(name, recorder, kinds),
                              "logits": [float(f"{x:.7g}") for x in logits[0, -1].tolist()]}
                    records.append(record)
            print(family, seconds, "done", flush=True)
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    import transformers
    header = {
        "source": "xxayt/SEATS: the methods' entry points (seats/__init__.py, baselines/*/__init__.py) patching the "
                  "release's modeling copies (models/) with its forwards (seats/modeling_qwen*_omni_seats.py, "
                  "baselines/*/modeling_qwen*_omni_*.py), run end to end",
        "commit": commit or COMMIT,
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__},
        "recipe": (f"the release's thinker class with the weights of seats_analysis.stand_ins.tiny_thinker(family, "
                   f"num_layers={NUM_LAYERS}, seed={THINKER_SEED}, portable=True), float32 on CPU, SDPA in the "
                   "decoder, the release's flash-attention classes in the encoders with flash_attn_varlen_func as "
                   f"plain PyTorch attention per chunk; inputs clip_batch(family, seconds=(s,)) for s in "
                   f"{list(CLIP_SECONDS)}; settings (video, audio) as in each record, torch.manual_seed(0) before "
                   "each forward; each method applied by the release's baselines/utils.py apply_zip_method_patch with "
                   "its config.yaml (SEATS: drop layers and late block layer of the schedule below, 12 layers for "
                   "the scheduler). Boundary k: "
                   "kept original positions after k decoder layers (0: entering layer 1); logits: the last "
                   "position's prefill logits (7 significant digits). See dev/release_forwards.py."),
        "num_layers": NUM_LAYERS, "thinker_seed": THINKER_SEED, "weights_checksum": checksums,
        "schedule": FORWARD_SCHEDULE,
        "qwen3_settings": QWEN3_SETTINGS}
    write_records(out, header, records)


QWEN3_DROPS_LAYERS = 8
QWEN3_DROPS_SCHEDULE = dict(num_layers=QWEN3_DROPS_LAYERS, middle_block_layer=4, late_block_layer=8, drop_layers=[4, 5, 6])
# (seconds, frames per second handed to the processor (None: its own), synthetic clip seed): at its own rate 3, 5 and
# 7 s end in a 13-token audio run; every clip's audio total is no multiple of the release's 50-token Stage I window
QWEN3_DROPS_CLIPS = [(3, None, 0), (5, None, 0), (7, None, 0), (5, 2, 0), (6, 2, 0), (7, 2, 0), (6, 2, 1)]


def qwen3_clip(seconds, fps, seed):
    "One synthetic Qwen3-Omni clip with question 0, at the processor's frame rate (`fps` None) or at `fps`."
    return make_inputs(offline_processor("qwen3"), TEST_QUESTIONS[:1], [synthetic_clip(seconds, seed=seed, family="qwen3")],
                       fps=fps)


def main_qwen3_drops(checkout: Path, out: Path):
    "Write the release's SEATS end to end on the 8-layer Qwen3-Omni thinker with three Stage II drops (see the docstring)."
    import transformers
    torch.set_num_threads(1)
    modeling, patched, dispatch, scheduler = load_release(checkout)
    scheduler._MODEL_NUM_LAYERS["tiny"] = QWEN3_DROPS_LAYERS
    folder = Path(tempfile.mkdtemp())
    recorder = Recorder(patched)
    thinker = tiny_thinker("qwen3", num_layers=QWEN3_DROPS_LAYERS, seed=THINKER_SEED, portable=True)
    records = []
    for seconds, fps, seed in QWEN3_DROPS_CLIPS:
        inputs = qwen3_clip(seconds, fps, seed)
        kinds = kinds_of(inputs["input_ids"][0], thinker.config)
        for setting, targets in SETTINGS.items():
            stand_in = release_thinker("qwen3", modeling, thinker)
            dispatch(stand_in, "seats", *targets, config_file(checkout, "seats", folder, QWEN3_DROPS_SCHEDULE),
                     pretrained="tiny")
            recorder.clear()
            with torch.no_grad():
                logits = stand_in.thinker(**inputs, use_audio_in_video=True, use_cache=False).logits
            records.append({"family": "qwen3", "clip_seconds": seconds, "fps": fps, "clip_seed": seed, "method": "seats",
                            "setting": setting, "video_ratio": targets[0], "audio_ratio": targets[1],
                            "boundaries": boundaries("seats", recorder, kinds),
                            "logits": [float(f"{x:.7g}") for x in logits[0, -1].tolist()]})
        print(seconds, fps, seed, "done", flush=True)
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    header = {
        "source": "xxayt/SEATS: seats/__init__.py patching the release's Qwen3-Omni modeling copy "
                  "(models/qwen3_omni_moe) with seats/modeling_qwen3_omni_seats.py, run end to end",
        "commit": commit or COMMIT,
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__},
        "recipe": (f"the release's Qwen3-Omni thinker class with the weights of seats_analysis.stand_ins.tiny_thinker("
                   f"'qwen3', num_layers={QWEN3_DROPS_LAYERS}, seed={THINKER_SEED}, portable=True), float32 on CPU, "
                   "as forwards.json; inputs make_inputs(offline_processor('qwen3'), TEST_QUESTIONS[:1], "
                   "[synthetic_clip(seconds, seed=clip_seed, family='qwen3')], fps=fps) for each record's clip_seconds, fps "
                   "and clip_seed; SEATS by "
                   "the release's apply_zip_method_patch with its config.yaml and the drop layers and late block "
                   "layer of the schedule below (8 layers for its scheduler). Boundary k: kept original positions "
                   "after k decoder layers (0: entering layer 1); logits: the last position's prefill logits "
                   "(7 significant digits). See dev/release_forwards.py --qwen3-drops."),
        "num_layers": QWEN3_DROPS_LAYERS, "thinker_seed": THINKER_SEED,
        "weights_checksum": {"qwen3": weights_checksum(thinker)}, "schedule": QWEN3_DROPS_SCHEDULE,
        "qwen3_settings": QWEN3_SETTINGS}
    write_records(out, header, records)


if __name__ == "__main__":
    here = Path(__file__).resolve().parents[1] / "data/fixtures/release"
    checkout, rest = Path(sys.argv[1]), sys.argv[2:]
    if rest[:1] == ["--qwen3-drops"]:
        main_qwen3_drops(checkout, Path(rest[1]) if len(rest) > 1 else here / "forwards_qwen3.json")
    else:
        main(checkout, Path(rest[0]) if rest else here / "forwards.json")
