"""`seats-analysis demo`'s options reach the main job as given (the job itself is stood in for: it takes minutes)."""
import pytest

from seats_analysis import cli, demo


class Stopped(Exception):
    "Raised by the stand-in main job once it has seen its arguments."


@pytest.mark.parametrize("argv, items", [(["--quick", "--items", "2"], 2), (["--quick"], 24), ([], 48),
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
