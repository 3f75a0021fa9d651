"""This project against recordings of the authors' release (`xxayt/SEATS`), in `data/fixtures/release/`.

The recordings were made by running the release's own code (`dev/release_*.py`, not part of the test run) with
transformers 4.57.1 and torch 2.8 (`stage_two.json` with torch 2.15); each file names the release commit, the seeds
and the recipe. `positions.json` hands this project's states to the release's selection functions; `forwards.json`
runs the release's patched model forwards end to end and holds, besides the kept positions, the last position's
prefill logits; `forwards_qwen3.json` (torch 2.14.1) runs the release's SEATS alone on an 8-layer Qwen3-Omni thinker
with three Stage II drops in a row, on clips with partial audio windows; `stage_two.json` holds Stage II states
(positions, kinds, scores, keep ratios) with what the release's Stage II keeps from each. `dycoke.json` (torch 2.15)
holds what the temporal merging function of the DyCoke release (`KD-TAO/DyCoke`) keeps of recorded frame features
(`dev/release_dycoke.py`).
"""
import json
from pathlib import Path

import torch

from seats_analysis.benchmarks import BENCHMARKS
from seats_analysis.compat import text_model
from seats_analysis.dycoke import release_num_keep, temporal_merge
from seats_analysis.inner_llm import top_down_keep
from seats_analysis.layout import Kind
from seats_analysis.methods import METHODS
from seats_analysis.scoring import parse_answer
from seats_analysis.testing import (MAX_NEAR_TIES, TEST_QUESTIONS, clip_batch, one_swap, rounding_sensitive,
                                    tiny_schedule)
from seats_analysis.stand_ins import (FAMILIES, make_inputs, offline_processor, synthetic_clip, tiny_thinker,
                                      weights_checksum)

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "release"


def _parser_rows():
    record = json.loads((FIXTURES / "parsers.json").read_text())
    return [(benchmark, row["reply"], row["letter"]) for benchmark, rows in record["letters"].items() for row in rows]


def test_parser_table_covers_the_hard_cases():
    replies = {reply for _, reply, _ in _parser_rows()}
    for reply in ("The answer is C. A red car drives past.", "Dunno", "Cats and Dogs", "</think>",
                  "<think>maybe B</think> C", "答案是B", "정답은 C입니다", "b", "B or C", "no idea"):
        assert reply in replies, reply
    assert {benchmark for benchmark, _, _ in _parser_rows()} == {"worldsense", "dailyomni", "videomme",
                                                                  "omnivideobench", "lvomnibench"}


def test_paper_parsers_read_the_release_letters():
    read = [(benchmark, reply, letter, parse_answer(BENCHMARKS[benchmark], reply, "paper"))
            for benchmark, reply, letter in _parser_rows()]
    wrong = [row for row in read if row[3] != row[2]]
    assert not wrong, f"(benchmark, reply, release, ours): {wrong}"


def _record(name):
    return json.loads((FIXTURES / name).read_text())


def _thinker(record, family):
    "The recording's portable tiny thinker, checked against the weights it was recorded with."
    thinker = tiny_thinker(family, num_layers=record["num_layers"], seed=record["thinker_seed"], portable=True)
    ours, recorded = weights_checksum(thinker), record["weights_checksum"][family]
    assert all(abs(a - b) <= 1e-9 * abs(b) for a, b in zip(ours, recorded)), f"{family} weights {ours} != {recorded}"
    return thinker


def _schedule(record, family):
    "The recording's schedule; for Qwen3 with the release's window constants and Stage II temperature."
    return tiny_schedule(family, **record["schedule"], **record["qwen3_settings"] if family == "qwen3" else {})


def _ours(thinker, schedule, inputs, record):
    "Kept original positions per boundary, the embeddings entering layer 1 and the last logits of this project's method."
    entering = {}
    hook = text_model(thinker).layers[0].register_forward_pre_hook(
        lambda module, args, kwargs: entering.update(hidden=(args[0] if args else kwargs["hidden_states"])[0].clone()),
        with_kwargs=True)
    try:
        with torch.no_grad(), METHODS[record["method"]](thinker, schedule, record["video_ratio"],
                                                        record["audio_ratio"]) as run:
            logits = thinker(**inputs, use_audio_in_video=True).logits[0, -1]
    finally:
        hook.remove()
    prefill = run.events[0]
    kept = {str(event.k): event.kept[0][event.kept[0] >= 0] for event in prefill.events}
    return prefill.kinds[0], kept, entering["hidden"], logits


def _compare(record, kinds, kept, entering) -> list[str]:
    "Where this project's kept positions differ from the release's in one record."
    problems, boundaries, previous = [], {}, None
    for k in sorted(record["boundaries"], key=int):
        release = record["boundaries"][k]
        if k not in kept and previous is not None and release.get("kept") == previous:
            continue  # the release cuts nothing here (keep ratios of 1); this project does not stop at it
        boundaries[k] = release
        previous = release.get("kept", previous)
    if sorted(kept) != sorted(boundaries):
        return [f"boundaries {sorted(kept)} != release {sorted(boundaries)}"]
    for k, release in boundaries.items():
        ours = kept[k]
        video = ours[kinds[ours] == Kind.VIDEO]
        audio = ours[kinds[ours] == Kind.AUDIO]
        checks = {"kept": ours.tolist(), "kept_video": video.tolist(), "video_count": len(video),
                  "audio_count": len(audio)}
        for name, value in release.items():
            if name in checks and checks[name] != value:
                problems.append(f"boundary {k} {name}: ours {checks[name]} != release {value}")
        if k == "0" and ("merged_sum" in release or "merged_video_sum" in release):
            rows = torch.ones(len(ours), dtype=torch.bool) if "merged_sum" in release else kinds[ours] == Kind.VIDEO
            total = float(entering[rows].double().sum())
            expected = release.get("merged_sum", release.get("merged_video_sum"))
            if abs(total - expected) > 1e-4 * max(1.0, abs(expected)):
                problems.append(f"boundary 0 merged embeddings sum {total} != release {expected}")
    return problems


# Near-ties among the tiny encoders' features decide some selections (SEATS' Stage I and VisionZip-om on Qwen3,
# DivPrune's max-min greedy), and the recording machine's CPU kernels may break them otherwise than this one's
# (see `seats_analysis.testing.rounding_sensitive`). A record that differs is held to the release's counts per
# boundary instead of its positions when near-ties decide it here: its positions move when the media inputs move
# by a relative 1e-3, or it parts from the release by one swapped position at its first differing boundary.

def _release_kept(release: dict):
    return release.get("kept", release.get("kept_all"))


def _one_swap(record, kept) -> bool:
    "Whether, at the first boundary where they differ, this project keeps the release's positions but one."
    for k in sorted(kept, key=int):
        release = _release_kept(record["boundaries"].get(k, {}))
        if release is not None and kept[k].tolist() != release:
            return one_swap(kept[k].tolist(), release)
    return False


def _near_tie(thinker, schedule, inputs, row, kept) -> bool:
    "Whether near-ties decide what this project keeps in `row` (see above)."
    def positions(moved):
        return {k: v.tolist() for k, v in _ours(thinker, schedule, moved, row)[1].items()}
    return _one_swap(row, kept) or rounding_sensitive(positions, inputs)


def _count_problems(record, kinds, kept) -> list[str]:
    "Where this project keeps other numbers of positions (in all, of video, of audio) than the release."
    problems = []
    for k, release in record["boundaries"].items():
        if k not in kept:
            continue
        ours = kept[k]
        counts = {"kept": len(ours), "video_count": int((kinds[ours] == Kind.VIDEO).sum()),
                  "audio_count": int((kinds[ours] == Kind.AUDIO).sum())}
        all_kept, video = _release_kept(release), release.get("kept_video")
        recorded = {"kept": None if all_kept is None else len(all_kept),
                    "video_count": release.get("video_count", None if video is None else len(video)),
                    "audio_count": release.get("audio_count")}  # None: not recorded at this boundary
        problems += [f"boundary {k} {name}: ours {counts[name]} != release {value}"
                     for name, value in recorded.items() if value is not None and counts[name] != value]
    return problems


def _check(family, seconds, thinker, schedule, inputs, row, near_ties) -> tuple[list[str], tuple]:
    "Problems of one record (positions, or counts where near-ties decide it) and this project's run of it."
    ours = _ours(thinker, schedule, inputs, row)
    kinds, kept, entering, _ = ours
    name = f"{family} {seconds}s {row['method']} {row['setting']}"
    problems = _compare(row, kinds, kept, entering)
    if problems and _near_tie(thinker, schedule, inputs, row, kept):
        near_ties.append((family, row["method"], name))
        problems = _count_problems(row, kinds, kept)
    return [f"{name}: {p}" for p in problems], ours


def _recorded_runs(record):
    "(family, clip seconds, thinker, schedule, inputs, record row) for every recorded run, one thinker per family."
    for family in FAMILIES:
        thinker, schedule = _thinker(record, family), _schedule(record, family)
        rows = [r for r in record["records"] if r["family"] == family]
        for seconds in sorted({r["clip_seconds"] for r in rows}):
            inputs = clip_batch(family, seconds=(seconds,))
            for row in (r for r in rows if r["clip_seconds"] == seconds):
                yield family, seconds, thinker, schedule, inputs, row


# Both recordings use portable thinkers (`tiny_thinker(..., portable=True)`), whose weights are the same under
# transformers 4.57 and 5.x; the default thinker draws its weights in the order the model builds its modules, which
# differs between the two lines (and the kept positions with it).
def test_kept_positions_match_the_release():
    "This project's states handed to the release's selection functions (dev/release_positions.py)."
    record = _record("positions.json")
    problems, near_ties = [], []
    for family, seconds, thinker, schedule, inputs, row in _recorded_runs(record):
        problems += _check(family, seconds, thinker, schedule, inputs, row, near_ties)[0]
        if row["method"] == "seats":
            ours = [schedule.plan(row[f"{m}_ratio"]).keep_ratios for m in ("video", "audio")]
            if ours != [row["keep_ratios"]["video"], row["keep_ratios"]["audio"]]:
                problems.append(f"{family} {row['setting']} keep ratios {ours} != release {row['keep_ratios']}")
    assert not problems, "\n".join(problems)
    assert len(near_ties) <= MAX_NEAR_TIES * len(record["records"]), near_ties
    print(f"decided by near-ties here (compared by counts): {[name for *_, name in near_ties]}")


def _audio_runs(kinds: torch.Tensor) -> list[int]:
    "Lengths of the contiguous runs of audio positions in one row of kinds."
    audio = (kinds == Kind.AUDIO).int()
    starts = torch.diff(audio, prepend=torch.zeros(1, dtype=torch.int)) == 1
    return torch.bincount(starts.cumsum(0)[audio.bool()]).tolist()[1:]


def test_stage_two_states_match_the_release():
    """Every recorded Stage II state through this project's Stage II alone (dev/release_positions.py --stage-two): the
    same positions as the release's Stage II at every drop, whatever happened upstream (Stage I's near-ties on Qwen3
    make whole runs part, and counts alone hide a budget moved between windows)."""
    record = _record("stage_two.json")
    problems, partial = [], set()
    for state in record["states"]:
        family = state["family"]
        kinds = torch.tensor([int(kind) for kind in state["kinds"]])
        keep = top_down_keep(torch.tensor(state["scores"], dtype=torch.float32), kinds, state["video_keep_ratio"],
                             state["audio_keep_ratio"], _schedule(record, family).temperature)
        ours = torch.tensor(state["index"])[keep].tolist()
        if ours != state["kept"]:
            problems.append(f"{family} {state['clip_seconds']}s {state['setting']} drop {state['k']}: ours keeps "
                            f"{sorted(set(ours) - set(state['kept']))} instead of {sorted(set(state['kept']) - set(ours))}")
        runs = _audio_runs(kinds)
        if state["k"] > record["schedule"]["drop_layers"][0] and len(runs) > 1 and runs[-1] < runs[0]:
            partial.add((family, state["setting"].startswith("constructed")))
    assert not problems, "\n".join(problems)
    # the recording covers a partial last audio window after the first drop, from real runs and constructed scores
    assert partial == {(family, constructed) for family in FAMILIES for constructed in (False, True)}, partial
    assert _schedule(record, "qwen3").temperature == 0.3 and _schedule(record, "qwen2_5").temperature == 0.1


LOGIT_TOLERANCE = 1e-4  # float32
METHODS_RECORDED = ("seats", "random", "fastv", "fastv-om", "visionzip", "visionzip-om")


def _cuts(row) -> dict:
    "All positions the release kept per boundary, leaving out boundaries where it cut nothing."
    cuts, previous = {}, None
    for k in sorted(row["boundaries"], key=int):
        kept = row["boundaries"][k]["kept_all"]
        if kept != previous:
            cuts[k] = previous = kept
    return cuts


def test_release_forwards_keep_the_same_positions_and_give_the_same_logits():
    "The release's own patched forwards run end to end (dev/release_forwards.py): positions per boundary and logits."
    record = _record("forwards.json")
    problems, compared, worst, near_ties = [], {}, {}, []
    for family, seconds, thinker, schedule, inputs, row in _recorded_runs(record):
        found, (kinds, kept, entering, logits) = _check(family, seconds, thinker, schedule, inputs, row, near_ties)
        problems += found
        same = {k: v.tolist() for k, v in kept.items()} == _cuts(row)
        if same:  # the same embeddings reach the same layers: the logits must agree
            gap = float((logits - torch.tensor(row["logits"])).abs().max())
            key = (family, row["method"])
            compared[key], worst[key] = compared.get(key, 0) + 1, max(worst.get(key, 0.0), gap)
            if gap > LOGIT_TOLERANCE:
                problems.append(f"{family} {seconds}s {row['method']} {row['setting']}: last logits differ by {gap:.2e}")
    assert not problems, "\n".join(problems)
    # every record is compared, Random and the randomly dropped audio of plain FastV and VisionZip included: the
    # release draws with torch.randperm from the global generator (seeded 0 before each recorded forward), this
    # project from its own generator seeded 0, in the same order
    for family in FAMILIES:
        for method in METHODS_RECORDED:
            expected = sum(r["family"] == family and r["method"] == method for r in record["records"])
            excused = sum((f, m) == (family, method) for f, m, _ in near_ties)
            assert compared.get((family, method), 0) == expected - excused, (family, method, compared, near_ties)
    assert len(near_ties) <= MAX_NEAR_TIES * len(record["records"]), near_ties
    print(f"decided by near-ties here (compared by counts): {[name for *_, name in near_ties]}")
    print({f"{f} {m}": f"{n} compared, max |logit difference| {worst[f, m]:.1e}" for (f, m), n in compared.items()})


def _qwen3_drops_inputs(row):
    "The processor inputs of one record of forwards_qwen3.json."
    clip = synthetic_clip(row["clip_seconds"], seed=row["clip_seed"], family="qwen3")
    return make_inputs(offline_processor("qwen3"), TEST_QUESTIONS[:1], [clip], fps=row["fps"])


def _qwen3_drops_run(thinker, schedule, inputs, row) -> tuple[dict, torch.Tensor]:
    "This project's SEATS on one record of forwards_qwen3.json: kept original positions per boundary, last logits."
    _, kept, _, logits = _ours(thinker, schedule, inputs, row)
    return {k: v.tolist() for k, v in kept.items()}, logits


def test_release_qwen3_drops_keep_the_release_positions_at_every_boundary():
    """The release's SEATS end to end on Qwen3-Omni with a Stage II drop after each of layers 4, 5 and 6
    (dev/release_forwards.py --qwen3-drops): every record keeps the release's positions at every boundary and gives
    its logits. With Qwen2.5's Stage II temperature (0.1) instead of the release's Qwen3 one (0.3) the same schedule
    parts from ours, with the same counts, at drops after the first.

    On a CPU whose kernels break the near-ties of Stage I's max-min picks among the tiny encoder's near-identical
    audio frames otherwise than the recording machine's (AVX-512 on an AMD EPYC does, for every record), the
    positions follow from those ties: such a record (`rounding_sensitive`: its positions move when the media move by
    a relative 1e-3) is held to Stage I's budget (its count at boundary 0) instead. Stage II itself is compared bit
    for bit on the release's own states by `test_stage_two_states_match_the_release` on every machine."""
    record = _record("forwards_qwen3.json")
    thinker, schedule = _thinker(record, "qwen3"), _schedule(record, "qwen3")
    assert schedule.temperature == 0.3 and record["environment"]["transformers"] == "4.57.1"
    late = record["schedule"]["late_block_layer"]
    problems, other_temperature, near_ties = [], [], []
    for row in record["records"]:
        name = f"{row['clip_seconds']}s at fps {row['fps']} (clip seed {row['clip_seed']}) {row['setting']}"
        release, inputs = _cuts(row), _qwen3_drops_inputs(row)
        assert sum(0 < int(k) < late - 1 for k in release) >= 2, f"{name}: fewer than two Stage II cuts"
        kept, logits = _qwen3_drops_run(thinker, schedule, inputs, row)
        if kept != release and rounding_sensitive(lambda moved: _qwen3_drops_run(thinker, schedule, moved, row)[0],
                                                  inputs):
            near_ties.append(name)
            if len(kept["0"]) != len(release["0"]):
                problems.append(f"{name}: Stage I keeps {len(kept['0'])} != release {len(release['0'])}")
        elif kept != release:
            problems += [f"{name} boundary {k}: ours keeps {sorted(set(kept.get(k, [])) - set(v))} instead of "
                         f"{sorted(set(v) - set(kept.get(k, [])))}" for k, v in release.items() if kept.get(k) != v]
        elif (gap := float((logits - torch.tensor(row["logits"])).abs().max())) > LOGIT_TOLERANCE:
            problems.append(f"{name}: last logits differ by {gap:.2e}")
        kept_01, _ = _qwen3_drops_run(thinker, tiny_schedule("qwen3", **record["schedule"], **{
            **record["qwen3_settings"], "temperature": 0.1}), inputs, row)
        if kept_01 != kept:
            first = min((k for k in kept if kept_01.get(k) != kept[k]), key=int)
            same_counts = [len(kept_01[k]) for k in kept] == [len(v) for v in kept.values()]
            other_temperature.append((name, first, same_counts))
    assert not problems, "\n".join(problems)
    assert {row["fps"] for row in record["records"]} == {None, 2}
    assert any(int(first) > record["schedule"]["drop_layers"][0] for _, first, _ in other_temperature), other_temperature
    assert other_temperature and all(same_counts for *_, same_counts in other_temperature), other_temperature
    print(f"decided by near-ties here (held to Stage I's count): {near_ties}")


def test_dycoke_temporal_merging_keeps_the_release_indices():
    "DyCoke's temporal merging against the release's own function on the same frame features (dev/release_dycoke.py)."
    record = _record("dycoke.json")
    counts = {case["frames"] for case in record["cases"] if "kept" in case}
    assert {5, 7, 9, 11, 13} <= counts and {6, 10} <= counts, counts  # odd, and even but not a multiple of four
    assert {"static", "pairs", "half static"} <= {case["pattern"] for case in record["cases"] if "kept" in case}
    problems = []
    for case in record["cases"]:
        features = torch.tensor(case["features"], dtype=torch.float32)
        tokens = case["tokens_per_frame"]
        keep = temporal_merge(features, tokens, release_num_keep(case["merging_ratio"], tokens))
        name = f"{case['frames']} frames of {tokens} ({case['pattern']}, +{case['extra']}, k={case['merging_ratio']})"
        if "error" in case:  # the release raises on fewer than five frames; here a defined result
            assert case["frames"] < 5 and "stack expects a non-empty TensorList" in case["error"], (name, case["error"])
            continue
        if keep.nonzero().flatten().tolist() != sorted(case["kept"]):
            problems.append(f"{name}: ours {keep.nonzero().flatten().tolist()} != release {sorted(case['kept'])}")
    assert not problems, "\n".join(problems)
