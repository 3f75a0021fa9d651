"""Every method keeps exactly the positions recorded in `data/fixtures/kept_positions.json` (written by
`dev/kept_positions.py` before the selection code was vectorised; the recipe and seeds are in the file)."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import transformers
from packaging.version import Version
from unittest.mock import patch

from seats_analysis import omnizip
from seats_analysis.pre_llm import _COMPILED, CAN_COMPILE, COMPILE_MIN_TORCH, SelectionCompiler, windowed_windivprune_at
from seats_analysis.seats import seats
from seats_analysis.stand_ins import FAMILIES, tiny_thinker
from seats_analysis.testing import MAX_NEAR_TIES, clip_batch, one_swap, rounding_sensitive

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "data" / "fixtures" / "kept_positions.json"


def _recipe_module():
    spec = importlib.util.spec_from_file_location("kept_positions_recipe", ROOT / "dev" / "kept_positions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_matches_the_fixture():
    recipe, stored = _recipe_module(), json.loads(FIXTURE.read_text())["recipe"]
    assert stored["settings"] == {name: list(ratios) for name, ratios in recipe.SETTINGS.items()}
    assert stored["inputs"] == {name: list(seconds) for name, seconds in recipe.INPUTS.items()}
    assert stored["schedule"] == recipe.SCHEDULE and stored["num_layers"] == recipe.NUM_LAYERS
    # the Qwen3 schedule is the release's (its audio windows and its Stage II temperature, 0.3 where Qwen2.5's is 0.1)
    assert stored["qwen3_settings"] == recipe.QWEN3_SETTINGS and recipe.fixture_schedule("qwen3").temperature == 0.3


# Recorded from transformers 5.x model states (the 4.57 line gives other states for the same ids, see
# test_release_fixtures.py), so the comparison runs under 5.x.
#
# Near-ties among the tiny encoders' features decide some selections (DivPrune's max-min greedy over nearly equal
# audio frames of a pure tone, SEATS' Stage I on Qwen3), and the recording's CPU kernels may break them otherwise
# than this machine's. A record whose kept positions differ is held to the recorded counts per boundary and row
# instead of the positions when near-ties decide it here: its positions move when the media inputs move by a
# relative 1e-3 (`rounding_sensitive`), or it differs from the recording by one swapped position per row at the
# first boundary where they part. VisionZip's and OmniZip's merged tokens sum within 1e-3 (their groups are assigned by
# near-tied similarities); every other method's kept embeddings within 1e-6.
MERGING = ("visionzip", "visionzip-om", "omnizip")


def _differing_boundaries(ours, recorded) -> list[str]:
    return [k for k in sorted(set(ours["boundaries"]) | set(recorded["boundaries"]), key=int)
            if ours["boundaries"].get(k) != recorded["boundaries"].get(k)]


def _differences(method, ours, recorded) -> list[str]:
    differ = _differing_boundaries(ours, recorded)
    problems = [f"kept positions differ at boundaries {differ}"] if differ else []
    expected, tolerance = recorded["entering_sum"], 1e-3 if method in MERGING else 1e-6
    if abs(ours["entering_sum"] - expected) > tolerance * max(1.0, abs(expected)):
        problems.append(f"embeddings entering layer 1 sum to {ours['entering_sum']} != {expected}")
    return problems


# OmniZip ranks the audio of a clip whose tone repeats by saliencies that agree window for window to a few float32
# ulps (the same frames give the same logits up to the order of a sum), so which of those tokens it keeps as
# dominant follows the machine's kernels, and what follows from that pick (the contextual tokens merged around the
# dominant ones) with it. A record that parts from the recording at boundary 0 only in rows where a token only we keep
# and one only the recording keeps tie here within `SALIENCY_TIE` (relative) is held to the recorded counts, as
# `10b_omnizip` holds OmniZip to the release's own picks.
SALIENCY_TIE = 1e-6  # about 8 float32 ulps


def _audio_saliencies(keep, inputs) -> dict:
    "OmniZip's saliency of each audio token, by (row, original position), in a run of `keep` on `inputs`."
    score = {}
    original = omnizip.OmniZip._audio

    def recording(self, state, row, audio, video_features, saliency):
        score.update({(row, p): s for p, s in zip(audio.tolist(), saliency.double().tolist())})
        return original(self, state, row, audio, video_features, saliency)

    with patch.object(omnizip.OmniZip, "_audio", recording):
        keep(inputs)
    return score


def _saliency_tie_decided(keep, inputs, ours, recorded) -> bool:
    "Whether each row where OmniZip parts from the recording at boundary 0 parts at an audio saliency tie."
    if _differing_boundaries(ours, recorded)[:1] != ["0"]:
        return False
    score = _audio_saliencies(keep, inputs)
    for row, (mine, theirs) in enumerate(zip(ours["boundaries"]["0"], recorded["boundaries"]["0"])):
        only_mine, only_theirs = set(mine) - set(theirs), set(theirs) - set(mine)
        if (only_mine or only_theirs) and not any(
                (row, p) in score and (row, q) in score
                and abs(score[row, p] - score[row, q]) <= SALIENCY_TIE * abs(score[row, q])
                for p in only_mine for q in only_theirs):
            return False
    return True


def _counts(record) -> dict:
    return {k: [len(row) for row in rows] for k, rows in record["boundaries"].items()}


def _one_swap(ours, recorded) -> bool:
    "Whether each row parts from the recording by one position at the first boundary where they differ."
    differ = _differing_boundaries(ours, recorded)
    if not differ:
        return False
    mine, rows = ours["boundaries"].get(differ[0], []), recorded["boundaries"].get(differ[0], [])
    return len(rows) == len(mine) and all(map(one_swap, mine, rows))


@pytest.mark.skipif(Version(transformers.__version__) < Version("5"), reason="recorded from transformers 5.x states")
def test_every_method_keeps_the_recorded_positions():
    stored = json.loads(FIXTURE.read_text())["records"]
    problems, seen, sensitive = [], 0, []
    for family, input_name, method, setting, inputs, keep in _recipe_module().runs():
        recorded, ours = stored[family][input_name][method][setting], keep(inputs)
        seen += 1
        where = f"{family} {input_name} {method} {setting}"
        differences = _differences(method, ours, recorded)
        moved_boundaries = lambda moved: keep(moved)["boundaries"]
        if differences and (_one_swap(ours, recorded) or rounding_sensitive(moved_boundaries, inputs) or (
                method == "omnizip" and _saliency_tie_decided(keep, inputs, ours, recorded))):
            sensitive.append(where)
            if _counts(ours) != _counts(recorded):
                problems.append(f"{where}: kept counts {_counts(ours)} != recorded {_counts(recorded)}")
        else:
            problems += [f"{where}: {difference}" for difference in differences]
    assert seen == sum(len(settings) for inputs in stored.values() for methods in inputs.values()
                       for settings in methods.values())
    assert not problems, "\n".join(problems)
    assert len(sensitive) <= MAX_NEAR_TIES * seen, f"{len(sensitive)} of {seen} records decided by rounding: {sensitive}"
    print(f"{seen} records, {seen - len(sensitive)} compared position by position; decided by rounding here "
          f"(compared by counts): {sensitive}")


# Inductor takes tens of seconds a graph on a CPU, so every clip and setting of the recipe is compiled with `aot_eager`
# (the captured graph, functionalised, run by eager's kernels: it checks the capture), and one clip and setting per
# family with inductor, `compiled=True`'s kernels: the Qwen3 one is where fused distances flipped a near-tie of Stage I
# before the distances became one operation run by eager's kernels (`pre_llm.window_distances`).
INDUCTOR_CASES = {"qwen3": ("batch_5s_3s", "R35"), "qwen2_5": ("single_4s", "R10")}


@pytest.mark.skipif(not CAN_COMPILE, reason=f"the compiled selection needs torch >= {COMPILE_MIN_TORCH}")
@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_seats_keeps_the_eager_positions(family):
    "SEATS with each stage's selection compiled keeps, on every clip and setting of the recipe, what the eager SEATS keeps."
    recipe = _recipe_module()
    torch.manual_seed(0)
    thinker = tiny_thinker(family, num_layers=recipe.NUM_LAYERS, seed=recipe.THINKER_SEED)
    schedule = recipe.fixture_schedule(family)
    compared = 0
    for input_name, seconds in recipe.INPUTS.items():
        inputs = clip_batch(family, seconds=seconds)
        for setting, (video_ratio, audio_ratio) in recipe.SETTINGS.items():
            kept = {}
            inductor = INDUCTOR_CASES[family] == (input_name, setting)
            for compiled in (False, True):
                compiler = None if not compiled or inductor else SelectionCompiler(backend="aot_eager")
                with torch.no_grad(), seats(thinker, schedule, video_ratio, audio_ratio, compiled=compiled,
                                            compiler=compiler) as run:
                    thinker(**inputs, use_audio_in_video=True)
                kept[compiled] = {event.k: event.kept.tolist() for event in run.events[0].events}
            assert kept[True] == kept[False], f"{family} {input_name} {setting}"
            compared += 0 in kept[True]  # Stage I cut something: the compiled selection decided it
    assert compared >= len(recipe.INPUTS) * (len(recipe.SETTINGS) - 2), compared
    assert any(key[0] is windowed_windivprune_at for key in _COMPILED)


def test_a_saliency_tie_excuses_only_a_tie():
    "A record that parts from ours between OmniZip audio tokens whose saliencies are far apart is not tie-decided."
    runs = _recipe_module().runs(methods=["omnizip"])
    family, input_name, method, setting, inputs, keep = next(r for r in runs if r[1:4] == ("single_4s", "omnizip", "R25"))
    ours = keep(inputs)
    score = {position: value for (row, position), value in _audio_saliencies(keep, inputs).items() if row == 0}
    kept = ours["boundaries"]["0"][0]
    best = max((p for p in kept if p in score), key=score.get)
    worst = min((p for p in score if p not in kept), key=score.get)
    assert score[best] - score[worst] > 1e-3 * score[best]  # far beyond SALIENCY_TIE
    other = {**ours, "boundaries": {**ours["boundaries"], "0": [sorted(set(kept) - {best} | {worst})]}}
    assert not _saliency_tie_decided(keep, inputs, ours, other)
    assert not _saliency_tie_decided(keep, inputs, ours, ours)  # nothing differs: nothing for a tie to excuse
