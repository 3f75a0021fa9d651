"""Every method keeps exactly the positions recorded in `data/fixtures/kept_positions.json` (written by
`dev/kept_positions.py` before the selection code was vectorised; the recipe and seeds are in the file)."""
import importlib.util
import json
from pathlib import Path

import pytest
import transformers
from packaging.version import Version

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


# Recorded from transformers 5.x model states (the 4.57 line gives other states for the same ids, see
# test_release_fixtures.py), so the comparison runs under 5.x.
@pytest.mark.skipif(Version(transformers.__version__) < Version("5"), reason="recorded from transformers 5.x states")
def test_every_method_keeps_the_recorded_positions():
    stored = json.loads(FIXTURE.read_text())["records"]
    problems, seen = [], 0
    for family, input_name, method, setting, ours in _recipe_module().records():
        recorded = stored[family][input_name][method][setting]
        seen += 1
        where = f"{family} {input_name} {method} {setting}"
        if ours["boundaries"] != recorded["boundaries"]:
            differ = [k for k in sorted(set(ours["boundaries"]) | set(recorded["boundaries"]), key=int)
                      if ours["boundaries"].get(k) != recorded["boundaries"].get(k)]
            problems.append(f"{where}: kept positions differ at boundaries {differ}")
        expected = recorded["entering_sum"]
        if abs(ours["entering_sum"] - expected) > 1e-6 * max(1.0, abs(expected)):
            problems.append(f"{where}: embeddings entering layer 1 sum to {ours['entering_sum']} != {expected}")
    assert seen == sum(len(settings) for inputs in stored.values() for methods in inputs.values()
                       for settings in methods.values())
    assert not problems, "\n".join(problems)
