"""This project against recordings of the authors' release (`xxayt/SEATS`), in `data/fixtures/release/`.

The recordings were made by running the release's own code (`dev/release_*.py`, not part of the test run);
each file names the release commit, the seeds and the recipe.
"""
import json
from pathlib import Path

import pytest
import torch
import transformers
from packaging.version import Version

from seats_analysis.baselines import METHODS
from seats_analysis.compat import text_model
from seats_analysis.layout import Kind
from seats_analysis.prompts import parse_answer
from seats_analysis.testing import FAMILIES, clip_batch, tiny_schedule, tiny_thinker

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
    wrong = [(benchmark, reply, letter, parse_answer(benchmark, reply, "paper"))
             for benchmark, reply, letter in _parser_rows() if parse_answer(benchmark, reply, "paper") != letter]
    assert not wrong, f"(benchmark, reply, release, ours): {wrong}"


def _positions_record():
    return json.loads((FIXTURES / "positions.json").read_text())


def _ours(thinker, schedule, inputs, record):
    "Kept original positions per boundary, and the embeddings entering layer 1, of this project's method."
    entering = {}
    hook = text_model(thinker).layers[0].register_forward_pre_hook(
        lambda module, args, kwargs: entering.update(hidden=(args[0] if args else kwargs["hidden_states"])[0].clone()),
        with_kwargs=True)
    try:
        with torch.no_grad(), METHODS[record["method"]](thinker, schedule, record["video_ratio"],
                                                        record["audio_ratio"]) as run:
            thinker(**inputs, use_audio_in_video=True)
    finally:
        hook.remove()
    prefill = run.events[0]
    kept = {str(event.k): event.kept[0][event.kept[0] >= 0] for event in prefill.events}
    return prefill.kinds[0], kept, entering["hidden"]


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


# The recording was made from states of transformers 5.x models. Under transformers 4.57.1 the same input ids give
# other kept positions for FastV / FastV-om on Qwen2.5 and for SEATS' Stage I on the 3 s Qwen2.5 clip (every
# Qwen3 record agrees); until that is explained the comparison runs under the 5.x line it was recorded with.
@pytest.mark.skipif(Version(transformers.__version__) < Version("5"),
                    reason="positions recorded from transformers 5.x model states; 4.57 differs for FastV on Qwen2.5")
def test_kept_positions_match_the_release():
    record = _positions_record()
    problems = []
    for family in FAMILIES:
        torch.manual_seed(0)
        thinker = tiny_thinker(family, num_layers=record["num_layers"], seed=record["thinker_seed"])
        rates = record["qwen3_audio_rates"] if family == "qwen3" else {}
        schedule = tiny_schedule(family, **record["schedule"], **rates)
        rows = [r for r in record["records"] if r["family"] == family]
        for seconds in sorted({r["clip_seconds"] for r in rows}):
            inputs = clip_batch(family, seconds=(seconds,))
            for row in (r for r in rows if r["clip_seconds"] == seconds):
                kinds, kept, entering = _ours(thinker, schedule, inputs, row)
                problems += [f"{family} {seconds}s {row['method']} {row['setting']}: {p}"
                             for p in _compare(row, kinds, kept, entering)]
                if row["method"] == "seats":
                    ours = [schedule.plan(row[f"{m}_ratio"]).keep_ratios for m in ("video", "audio")]
                    if ours != [row["keep_ratios"]["video"], row["keep_ratios"]["audio"]]:
                        problems.append(f"{family} {row['setting']} keep ratios {ours} != release {row['keep_ratios']}")
    assert not problems, "\n".join(problems)
