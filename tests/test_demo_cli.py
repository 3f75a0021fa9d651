"""`seats-analysis demo`'s options reach the main job as given, and a stop names the command that goes on (the job
itself is stood in for: it takes minutes; tests/test_demo_reporting.py runs it)."""
import signal

import pytest

from seats_analysis import cli, demo
from seats_analysis.catalog import DEMO_ITEMS, QUICK_ITEMS


class Stopped(Exception):
    "Raised by the stand-in main job once it has seen its arguments."


@pytest.mark.parametrize("argv, items", [(["--quick", "--items", "2"], 2), (["--quick"], QUICK_ITEMS), ([], DEMO_ITEMS),
                                         (["--items", "5"], 5)])
def test_items_reach_the_main_job(tmp_path, monkeypatch, argv, items):
    asked = {}

    def run_demo(out, num_items, **kwargs):
        asked.update(num_items=num_items, methods=kwargs["methods"])
        raise Stopped

    monkeypatch.setattr(demo, "run_demo", run_demo)
    with pytest.raises(Stopped):
        cli.main(["demo", *argv, "--out", str(tmp_path / "run")])
    assert asked["num_items"] == items
    assert (asked["methods"] is None) == ("--quick" not in argv)


def test_a_stop_names_the_command_that_goes_on(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the main job (a KeyboardInterrupt): exit status 130, a last line with the command that goes on, its
    options kept but --fresh-probe (which would start the stored probe and answers again), the handlers restored."""
    def run_demo(out, num_items, **kwargs):
        kwargs["report"]("Blocks (from the probe of 5 items): ...")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", run_demo)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    out = tmp_path / "my run"
    try:
        code = cli.main(["demo", "--fresh-probe", "--items", "5", "--organism", "qwen3_imposed", "--out", str(out)])
    except KeyboardInterrupt:
        pytest.fail("the stop reached the caller as a KeyboardInterrupt")
    lines = capsys.readouterr().out.splitlines()
    assert code == 130
    assert lines[-2] == "Blocks (from the probe of 5 items): ..."
    assert lines[-1].startswith(f"Stopped. Kept in {out}/: the probe records of 0 samples and 0 answers"), lines[-1]
    going_on = f"seats-analysis demo --items 5 --organism qwen3_imposed --out '{out}'"
    assert lines[-1].endswith(f"To go on from there: {going_on}")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
