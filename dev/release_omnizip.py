"""Record what the OmniZip release keeps and merges on this project's tiny thinkers (a development tool, not run in CI).

Usage: python dev/release_omnizip.py /path/to/OmniZip-checkout [out.json]

The release (`KD-TAO/OmniZip`) selects in `omnizip/omnizip_core.py` (`omnizip`: audio by saliency with merged anchors,
video window by window), a module that needs only torch: it is imported from the checkout as it is. The audio
saliency it ranks by is computed inside the patched audio attention of each family's modeling file (Qwen2.5-Omni:
`Qwen2_5OmniAudioFlashAttention2.forward`, the path the release runs, with flash attention; Qwen3-Omni:
`Qwen3OmniMoeAudioAttention.forward`). Those files import a whole pinned transformers, so only that method's
definition is taken from them (with `ast`) and bound to the last audio layer's attention of this project's tiny
thinker, in the namespace of the installed transformers' modeling module; it is called on the hidden states and
window boundaries that layer receives in a stock forward. Its flash-attention output is not used by the saliency
and is replaced by zeros (no flash-attn on CPU). Qwen2.5-Omni's encoder then pools the saliency in pairs (an odd
last frame dropped, `Qwen2_5OmniAudioEncoder.forward`): that step is written out here. The embeddings the release's
`omnizip` is given are the ones the stock thinker scatters into its LLM input. Recorded: the saliency, the kept
positions and the embeddings of the audio anchors the release changed. The thinkers are the portable tiny ones
(`tiny_thinker(..., portable=True)`), run with the installed transformers (5.x: the project's tests compare under
it). Nothing of the release is copied here.
"""
import ast
import json
import subprocess
import sys
import types
import typing
from pathlib import Path

import torch
import torch.nn.functional as F

from seats_analysis.compat import multimodal_model, text_model
from seats_analysis.layout import token_id
from seats_analysis.stand_ins import FAMILIES, make_inputs, offline_processor, synthetic_clip, tiny_thinker, weights_checksum

CORE = "omnizip/omnizip_core.py"
SALIENCY = {"qwen2_5": ("omnizip/modeling_qwen2_5_omni.py", "Qwen2_5OmniAudioFlashAttention2"),
            "qwen3": ("omnizip/qwen3_omni/modeling_qwen3_omni_moe.py", "Qwen3OmniMoeAudioAttention")}
NUM_LAYERS, THINKER_SEED = 2, 0
CLIPS = {  # name -> (seconds, static video)
    "qwen2_5": {"partial": (5, False), "static": (4, True), "one_window": (2, False)},
    "qwen3": {"partial": (10, False), "static": (4, True)},
}
RELEASE_DEFAULTS = {"qwen2_5": dict(rho_audio=0.3, rho_video=0.6, g=3, contextual_ratio=0.05),
                    "qwen3": dict(rho_audio=0.4, rho_video=0.7, g=3, contextual_ratio=0.05)}
SETTINGS = {"release": {}, "g0": dict(g=0), "g15": dict(g=15), "deep": dict(rho_audio=0.7, rho_video=0.8)}
QUESTION = "What is happening?"


def clip_inputs(family: str, seconds: int, static: bool):
    "One row: a synthetic clip (every frame the first one when `static`) with its audio track."
    frames, audio = synthetic_clip(seconds=seconds, seed=0, family=family)
    if static:
        frames[1:] = frames[0]
    return make_inputs(offline_processor(family), QUESTION, (frames, audio))


def release_method(checkout: Path, family: str, attention=None):
    """The release's saliency-computing attention forward of `family`, defined alone in transformers' modeling namespace;
    `attention` stands in for flash-attn's `flash_attn_varlen_func` (None: zeros, the saliency does not read it)."""
    path, class_name = SALIENCY[family]
    tree = ast.parse((checkout / path).read_text())
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name)
    forward = next(node for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == "forward")
    if family == "qwen2_5":
        from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni as modeling
    else:
        from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as modeling
    namespace = {**vars(modeling), **vars(typing), "F": F, "torch": torch,
                 "flash_attn_varlen_func": attention or (lambda q, k, v, *args, **kwargs: torch.zeros_like(q))}
    exec(compile(ast.Module([forward], type_ignores=[]), path, "exec"), namespace)
    return namespace["forward"]


def last_audio_layer_input(thinker, inputs) -> tuple:
    "(hidden states, window boundaries) the last audio layer's attention gets, and the LLM input embeddings (1, S, D)."
    seen = {}
    attn = multimodal_model(thinker).audio_tower.layers[-1].self_attn
    hooks = [attn.register_forward_pre_hook(lambda m, a, k: seen.update(attn=k or {"hidden_states": a[0]}),
                                            with_kwargs=True),
             text_model(thinker).register_forward_pre_hook(lambda m, a, k: seen.update(embeds=k["inputs_embeds"]),
                                                           with_kwargs=True)]
    try:
        with torch.no_grad():
            thinker(**inputs, use_audio_in_video=True)
    finally:
        for hook in hooks:
            hook.remove()
    return seen["attn"]["hidden_states"], seen["attn"]["cu_seqlens"], seen["embeds"]


def release_saliency(thinker, family: str, forward, hidden_states, cu_seqlens) -> torch.Tensor:
    "The release's audio saliency (one value per LLM audio token)."
    attn = multimodal_model(thinker).audio_tower.layers[-1].self_attn
    if not hasattr(attn, "attention_dropout"):
        attn.attention_dropout = 0.0  # an attribute the release's class defines
    with torch.no_grad():
        output = types.MethodType(forward, attn)(hidden_states, cu_seqlens=cu_seqlens, return_logits=True)
    if family == "qwen3":
        return output[1]
    logits = output[1]  # the encoder's pooling of the release, in pairs, an odd last frame dropped
    if logits.shape[0] % 2 == 1:
        logits = logits[:-1]
    return logits.view(-1, 2).mean(dim=-1) if logits.shape[0] >= 2 else logits


def record(checkout: Path) -> dict:
    sys.path.insert(0, str(checkout))
    from omnizip.omnizip_core import omnizip
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or None
    cases, checksums = [], {}
    for family in FAMILIES:
        thinker = tiny_thinker(family, num_layers=NUM_LAYERS, seed=THINKER_SEED, portable=True)
        checksums[family] = weights_checksum(thinker)
        forward = release_method(checkout, family)
        for clip, (seconds, static) in CLIPS[family].items():
            inputs = clip_inputs(family, seconds, static)
            hidden_states, cu_seqlens, embeds = last_audio_layer_input(thinker, inputs)
            saliency = release_saliency(thinker, family, forward, hidden_states, cu_seqlens)
            audio_id, video_id = token_id(thinker.config, "audio"), token_id(thinker.config, "video")
            for setting, changes in SETTINGS.items():
                settings = {**RELEASE_DEFAULTS[family], **changes}
                out, keep = omnizip(embeds.clone(), saliency, inputs["input_ids"], audio_id, video_id,
                                    inputs["video_grid_thw"], merging_ratio_audio=settings["rho_audio"],
                                    merging_ratio_v=settings["rho_video"],
                                    contextual_ratio=settings["contextual_ratio"], g=settings["g"])
                changed = (out[0] != embeds[0]).any(-1).nonzero().flatten()
                cases.append(dict(family=family, clip=clip, seconds=seconds, static=static, setting=setting,
                                  settings=settings, saliency=saliency.tolist(),
                                  kept=keep.nonzero().flatten().tolist(), merged_positions=changed.tolist(),
                                  merged=out[0, changed].tolist()))
    return dict(release="KD-TAO/OmniZip", commit=commit, source=f"{CORE}:omnizip and the audio attention forwards",
                torch=torch.__version__, num_layers=NUM_LAYERS, thinker_seed=THINKER_SEED,
                weights_checksum=checksums, question=QUESTION, recipe="python dev/release_omnizip.py <checkout>",
                cases=cases)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    default = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "release" / "omnizip.json"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else default
    result = record(Path(sys.argv[1]))
    out.write_text(json.dumps(result) + "\n")
    print(f"{len(result['cases'])} cases written to {out}")
