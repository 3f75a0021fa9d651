"""Record what every method keeps on tiny inputs, so that a rewrite of the selection code can prove it keeps the same.

Usage: python dev/kept_positions.py [out.json] [--add METHOD ...]   (default: data/fixtures/kept_positions.json)
With --add, only the named methods are run and their records joined to the existing file, replacing any it held (a
method added to `METHODS` after the recording, or one whose defaults changed on purpose); the others stay as recorded,
and the recipe notes what recorded the added ones.

Recipe (also written into the file): for each family (Qwen2.5-Omni, Qwen3-Omni) a tiny random-weight thinker of
`seats_analysis.stand_ins` (12 decoder layers, seed 0, float32, CPU, sdpa), the 12-layer tiny schedule of the release
fixtures (for Qwen3-Omni with the release's audio window constants and Stage II temperature, `QWEN3_SETTINGS`), two
inputs from `clip_batch` (a left-padded batch of a 5 s and a 3 s clip, with partial last windows, and a single 4 s
clip) and every method of `METHODS` at every setting below, one prefill each (method seed 0).
For each prefill it writes, per boundary k, each row's kept original positions (ascending), and the sum of the
embeddings that enter layer 1 (VisionZip merges tokens there). `tests/test_kept_positions.py` re-runs the recipe.
"""
import json
import sys
from pathlib import Path

import torch

from seats_analysis.compat import text_model
from seats_analysis.methods import METHODS
from seats_analysis.schedule import RELEASE_QWEN3_SETTINGS
from seats_analysis.testing import clip_batch, tiny_schedule
from seats_analysis.stand_ins import FAMILIES, tiny_thinker

NUM_LAYERS = 12
THINKER_SEED = 0
SCHEDULE = dict(num_layers=NUM_LAYERS, middle_block_layer=4, late_block_layer=10, drop_layers=[4, 6, 8, 9])
INPUTS = {"batch_5s_3s": (5, 3), "single_4s": (4,)}
SETTINGS = {"R35": (0.30, 0.65), "R25": (0.20, 0.55), "R15": (0.10, 0.45), "R10": (0.06, 0.35),
            "no_video": (0.0, 0.4), "audio_whole": (0.15, 1.0), "video_whole": (1.0, 0.2)}
QWEN3_SETTINGS = RELEASE_QWEN3_SETTINGS
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "kept_positions.json"


def fixture_schedule(family: str):
    "The 12-layer tiny schedule (Qwen3: the release's audio window constants and Stage II temperature)."
    return tiny_schedule(family, **SCHEDULE, **QWEN3_SETTINGS if family == "qwen3" else {})


def kept_positions(thinker, schedule, inputs, method: str, video_ratio: float, audio_ratio: float) -> dict:
    "Kept original positions per boundary and row, and the sum of the embeddings entering layer 1, of one prefill."
    entering = {}
    hook = text_model(thinker).layers[0].register_forward_pre_hook(
        lambda module, args, kwargs: entering.update(hidden=(args[0] if args else kwargs["hidden_states"]).clone()),
        with_kwargs=True)
    try:
        with torch.no_grad(), METHODS[method](thinker, schedule, video_ratio, audio_ratio) as run:
            thinker(**inputs, use_audio_in_video=True)
    finally:
        hook.remove()
    prefill = run.events[0]
    boundaries = {str(event.k): [sorted(row[row >= 0].tolist()) for row in event.kept] for event in prefill.events}
    return {"boundaries": boundaries, "entering_sum": float(entering["hidden"].double().sum())}


def runs(progress: bool = False, methods=None):
    """Yield (family, input name, method, setting, inputs, keep) over the whole recipe, where `keep(inputs)` runs the
    method on those inputs (or on perturbed ones) and returns its record."""
    for family in FAMILIES:
        torch.manual_seed(0)
        thinker = tiny_thinker(family, num_layers=NUM_LAYERS, seed=THINKER_SEED)
        schedule = fixture_schedule(family)
        for input_name, seconds in INPUTS.items():
            inputs = clip_batch(family, seconds=seconds)
            for method in methods or METHODS:
                for setting, (video_ratio, audio_ratio) in SETTINGS.items():
                    if progress:
                        print(family, input_name, method, setting, file=sys.stderr)
                    def keep(inputs, method=method, video_ratio=video_ratio, audio_ratio=audio_ratio):
                        return kept_positions(thinker, schedule, inputs, method, video_ratio, audio_ratio)
                    yield family, input_name, method, setting, inputs, keep


def records(progress: bool = False, methods=None):
    "Yield (family, input name, method, setting, record) over the whole recipe (or its runs of `methods`)."
    for family, input_name, method, setting, inputs, keep in runs(progress, methods):
        yield family, input_name, method, setting, keep(inputs)


def main(out: Path = DEFAULT_OUT, add=()):
    import transformers
    written_with = {"torch": torch.__version__, "transformers": transformers.__version__}
    if add:
        stored = json.loads(out.read_text())
        table, recipe = stored["records"], stored["recipe"]
        recipe.setdefault("added", {}).update({method: written_with for method in add})
    else:
        table = {}
        recipe = dict(num_layers=NUM_LAYERS, thinker_seed=THINKER_SEED, method_seed=0, schedule=SCHEDULE,
                      inputs={name: list(seconds) for name, seconds in INPUTS.items()},
                      settings={name: list(ratios) for name, ratios in SETTINGS.items()},
                      written_with=written_with, script="dev/kept_positions.py")
    recipe["qwen3_settings"] = QWEN3_SETTINGS
    for family, input_name, method, setting, record in records(progress=True, methods=list(add) or None):
        table.setdefault(family, {}).setdefault(input_name, {}).setdefault(method, {})[setting] = record
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"recipe": recipe, "records": table}, separators=(",", ":")) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    args = sys.argv[1:]
    added = args[args.index("--add") + 1:] if "--add" in args else []
    paths = args[:args.index("--add")] if "--add" in args else args
    main(Path(paths[0]) if paths else DEFAULT_OUT, added)
