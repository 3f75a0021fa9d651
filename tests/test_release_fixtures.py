"""This project against recordings of the authors' release (`xxayt/SEATS`), in `data/fixtures/release/`.

The recordings were made by running the release's own code (`dev/release_*.py`, not part of the test run);
each file names the release commit, the seeds and the recipe.
"""
import json
from pathlib import Path

from seats_analysis.prompts import parse_answer

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
