"""The README's code blocks run as written: the Python ones in order in one namespace, from a folder outside the
repository; the shell ones name commands and options that exist."""
import contextlib
import io
import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from seats_analysis.catalog import ORGANISMS
from seats_analysis.organism import organism_path
from seats_analysis.schedule import Schedule

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_two_commands():
    shell = [code for lang, code in BLOCKS if lang == "sh"]
    assert 'pip install -e . && seats-analysis demo\n' in shell
    assert 'pip install -e ".[dev]" && pytest -n 2 --dist worksteal tests\n' in shell


def test_python_blocks_run_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    printed = io.StringIO()
    blocks = [code for lang, code in BLOCKS if lang == "python"]
    assert len(blocks) >= 2
    with contextlib.redirect_stdout(printed):
        for code in blocks:
            exec(compile(code, str(README), "exec"), namespace)
    shown = printed.getvalue()
    # the run objects print readable summaries, not raw tensors
    assert "PruningRun(seats:" in shown and "tensor(" not in shown, shown
    assert re.search(r"Prefill\(2 row\(s\) of \d+ tokens, 12 layers; \(k, seq_len_after\) \[\(0, \d+\)\]", shown), shown
    assert list(tmp_path.iterdir()) == []  # nothing written into the folder it ran in


@pytest.mark.parametrize("name", ["qwen2_5", "qwen3"])
def test_an_events_organism_is_described_as_installed(name):
    """The README gives each events organism's blocks, full-token test accuracy and highest question kind as its shipped
    files do."""
    text = " ".join(README.read_text().split())
    schedule = Schedule.load(ORGANISMS[name])
    drops = schedule.drop_layers
    assert drops == list(range(drops[0], drops[-1] + 1)), drops  # the README writes them as a range
    blocks = (f"middle from layer {schedule.middle_block_layer}, late from layer {schedule.late_block_layer}, "
              f"drop layers {drops[0]}-{drops[-1]}")
    full = json.loads((organism_path(name) / "test_accuracy.json").read_text())["accuracy"]["full"]
    tested, top = full.pop("overall"), math.ceil(max(full.values()))  # the highest kind, rounded up: "no kind above"
    said = rf"[^%]*? answers {round(tested)}%[^%]*? no question kind above {top}%"
    assert re.search(re.escape(blocks) + said, text), (name, blocks, tested, top)


def _shell_commands():
    for lang, code in BLOCKS:
        if lang != "sh":
            continue
        for line in code.replace("\\\n", " ").splitlines():
            for command in line.split("&&"):
                words = shlex.split(command)
                if words[:1] == ["seats-analysis"] or words[:3] == ["python", "-m", "seats_analysis"]:
                    yield words


@pytest.mark.parametrize("words", list(_shell_commands()), ids=" ".join)
def test_shell_commands_parse(words):
    "Each seats-analysis command line of the README is accepted by its parser (checked with --help appended)."
    args = words[1:] if words[0] == "seats-analysis" else words[3:]
    result = subprocess.run([sys.executable, "-c", "import sys; from seats_analysis.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *args, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
