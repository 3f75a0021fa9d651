"""`seats-analysis demo` reports as it goes, stops cleanly on Ctrl-C or SIGTERM, and goes on from what it stored.

One quick run into a temporary run folder is stopped with SIGINT once it has stored answers, started again and
stopped with SIGTERM, then started a third time with the command the second one named and run to the end. The
tests read the three outputs (stdout and stderr together, in the order written) and the run folder.
"""
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from launching import ENV
from seats_analysis.catalog import QUICK_ITEMS
from seats_analysis.demo import DemoPaths
from seats_analysis.storage import read_jsonl
from seats_analysis.stats import format_accuracy

SEATS_ANALYSIS = [sys.executable, "-m", "seats_analysis"]  # the `seats-analysis` command, run by this interpreter
NAME = DemoPaths.name  # the prefix of a run folder's files, whichever organism the run is on
STEP = QUICK_ITEMS + 6  # answers a run stores before it is stopped: more than a cell's, so that one cell ends in it
BAR = re.compile(r"^answers:\s+\d+%\|.*\|\s*(\d+)/(\d+) ")  # a line of the answers' progress bar: done/total
DONE = re.compile(r"^Done (full tokens|\S+ R\d+): accuracy ")  # a cell's line, as it ends


@dataclass
class Run:
    "One run of the demo: its exit status, its output cut into lines (a progress bar's every state a line of its own)."
    code: int
    text: str

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in re.split(r"[\r\n]+", self.text) if line.strip()]

    def first(self, pattern: re.Pattern) -> int:
        "The index of the first line that `pattern` matches."
        found = next((i for i, line in enumerate(self.lines) if pattern.match(line)), None)
        assert found is not None, f"no line matches {pattern.pattern!r}:\n" + "\n".join(self.lines[-40:])
        return found

    def done(self) -> dict[str, int]:
        "The cells reported as ended, by name ('full tokens', 'seats R35', ...): the index of each one's line."
        found = [(DONE.match(line).group(1), i) for i, line in enumerate(self.lines) if DONE.match(line)]
        names = [name for name, _ in found]
        assert len(set(names)) == len(names), f"a cell reported twice: {names}"
        return dict(found)


def stored(folder: Path) -> dict[Path, int]:
    "The answers stored in a run folder: the distinct items of each results file."
    return {path: len({row["key"] for row in read_jsonl(path)})
            for path in sorted((folder / "results" / f"{NAME}_sweep").rglob("*.jsonl"))}


def line_counts(folder: Path) -> dict[Path, int]:
    "The lines of each results file of a run folder, whole or not."
    return {path: len(path.read_text().splitlines()) for path in stored(folder)}


def demo(command: list[str], log: Path, stop_at: int | None = None, stop=signal.SIGINT, folder: Path | None = None,
         timeout: float = 900) -> Run:
    """Run `seats-analysis COMMAND`; with `stop_at`, send `stop` once `folder` holds that many answers. Past `timeout`
    seconds the run is killed and the test fails with its output."""
    with open(log, "w") as out:
        process = subprocess.Popen([*SEATS_ANALYSIS, *command], env=ENV, stdout=out, stderr=subprocess.STDOUT)
        try:
            while stop_at is not None and process.poll() is None and sum(stored(folder).values()) < stop_at:
                time.sleep(0.1)
            if stop_at is not None:
                assert process.poll() is None, f"the run ended before it stored {stop_at} answers:\n{log.read_text()}"
                process.send_signal(stop)
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{command} ran past {timeout} s:\n{log.read_text()[-3000:]}") from None
    return Run(code, log.read_text())


def go_on_command(run: Run) -> str:
    "The command a stopped run's last line names."
    return run.lines[-1].partition("To go on from there: ")[2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "The three runs into one run folder, and the answers stored before each of the last two started."
    root = tmp_path_factory.mktemp("demo")
    folder = root / "run"
    command = ["demo", "--quick", "--out", str(folder)]
    first = demo(command, root / "first.log", STEP, signal.SIGINT, folder)
    after_first, lines_after_first = stored(folder), line_counts(folder)
    second = demo(command, root / "second.log", sum(after_first.values()) + STEP, signal.SIGTERM, folder)
    after_second, lines_after_second = stored(folder), line_counts(folder)
    named = shlex.split(go_on_command(second)) or ["seats-analysis", *command]  # the command the stop named
    assert named[0] == "seats-analysis", named
    third = demo(named[1:], root / "third.log")
    return dict(folder=folder, first=first, second=second, third=third, after_first=after_first,
                after_second=after_second, lines_after_first=lines_after_first, lines_after_second=lines_after_second)


def test_a_stop_keeps_the_answers_and_names_the_command_to_go_on(runs):
    "Ctrl-C and SIGTERM: exit status 130, no traceback, every stored line whole, a last line saying what is kept."
    folder = runs["folder"]
    for run, kept, written in ((runs["first"], runs["after_first"], runs["lines_after_first"]),
                               (runs["second"], runs["after_second"], runs["lines_after_second"])):
        assert run.code == 130, run.text[-3000:]
        assert "Traceback" not in run.text, run.text[-3000:]
        last = run.lines[-1]
        assert last.startswith(f"Stopped. Kept in {folder}/: the probe records of {QUICK_ITEMS} samples and "
                               f"{sum(kept.values())} answers"), last
        assert go_on_command(run) == f"seats-analysis demo --quick --out {folder}", last
        assert written == kept  # every line a whole row, one per item: nothing torn by the stop
    assert sum(runs["after_first"].values()) >= STEP
    assert sum(runs["after_second"].values()) >= sum(runs["after_first"].values()) + STEP


def test_a_run_goes_on_from_the_stored_answers(runs):
    """The second and third runs' answers bars start at the answers stored before them; the third ends the job with
    every item answered once in every cell."""
    third, folder = runs["third"], runs["folder"]
    assert third.code == 0, third.text[-3000:]
    results = pd.read_csv(folder / "results" / f"{NAME}_results.csv")
    total = QUICK_ITEMS * len(results)
    for run, before in ((runs["second"], runs["after_first"]), (runs["third"], runs["after_second"])):
        first_bar = BAR.match(run.lines[run.first(BAR)])
        assert (int(first_bar[1]), int(first_bar[2])) == (sum(before.values()), total), run.lines[run.first(BAR)]
        assert f"Reusing {sum(before.values())} of the {total} answers" in run.text
    assert set(results["n"]) == {QUICK_ITEMS}
    assert sorted(stored(folder).values()) == [QUICK_ITEMS] * len(results)
    assert all(len(read_jsonl(path)) == QUICK_ITEMS for path in stored(folder)), "an item answered twice"


def test_blocks_come_before_the_answers_and_each_cell_reports_as_it_ends(runs):
    """The blocks are printed before the answers' bar starts; each cell's line comes as it ends: in the stopped run,
    one for each cell that ended before the stop; in the last run, one for every cell (those whole before it started
    marked as stored, before its bar), with the numbers of the results table."""
    first, third, folder = runs["first"], runs["third"], runs["folder"]
    for run in (first, runs["second"], third):
        blocks = run.first(re.compile(rf"^Blocks \(from the probe of {QUICK_ITEMS} items\): middle from layer \d+"))
        assert blocks < run.first(BAR), run.lines[:blocks + 3]
    whole = lambda after: {path for path, n in after.items() if n == QUICK_ITEMS}
    assert len(first.done()) == len(whole(runs["after_first"])) >= 1, first.done()
    results = pd.read_csv(folder / "results" / f"{NAME}_results.csv")
    done = third.done()
    names = ["full tokens" if method == "full" else f"{method} {setting}" for method, setting in
             zip(results.method, results.setting)]
    assert sorted(done) == sorted(names), done
    started = third.first(BAR)
    stored_before = [third.lines[i].endswith(" (stored)") for i in done.values()]
    assert sum(stored_before) == len(whole(runs["after_second"])), done
    assert all((i < started) == was_stored for i, was_stored in zip(done.values(), stored_before)), done
    for name, row in zip(names, results.itertuples()):
        line = third.lines[done[name]]
        assert f"accuracy {format_accuracy(row.accuracy, row.ci_low, row.ci_high, row.n)}," in line, line
        assert f"kept V {row.video_retention:.3f} A {row.audio_retention:.3f}, {row.gflops:.3g} GFLOPs" in line, line


def test_the_table_is_explained_and_the_file_to_open_first_named(runs):
    "Under the end-of-run table, a line explaining each of its short headers, then the one file to open first."
    from seats_analysis.demo import SUMMARY_HEADERS
    lines, folder = runs["third"].lines, runs["folder"]
    header = next(i for i, line in enumerate(lines) if line.split() == list(SUMMARY_HEADERS.values()))
    results = pd.read_csv(folder / "results" / f"{NAME}_results.csv")
    legend = lines[header + 1 + len(results):]
    explained = set()
    for line in legend:
        names, colon, _ = line.strip().partition(": ")
        if line.startswith("  ") and colon:
            explained.update(names.split(", "))
    assert explained == set(SUMMARY_HEADERS.values()) - {"method"}, legend
    opened = [line for line in legend if line.startswith("Open first: ")]
    assert opened and opened[0].startswith(f"Open first: {folder / 'figures' / f'{NAME}_tradeoff.png'} "), legend
    assert (folder / "figures" / f"{NAME}_tradeoff.png").is_file()
