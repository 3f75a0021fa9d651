"""An events organism's saved recipe names no decoder layer: a tiny training run writes `training_recipe.json` beside
its model, and nothing in it removes tokens (or does anything else) at a fixed depth."""
import json

import pandas as pd
import pytest
import torch

from seats_analysis.events import EVENT_KINDS
from seats_analysis.organism import (RECIPE_FILE, TrainSettings, build_organism, organism_config, organism_processor,
                                     train)

# the settings that name a decoder layer, and the value of another setting under which each is inert
INERT_UNLESS = {"late_removal_layer": ("late_removal", 0.0)}


def layer_dependent_steps(recipe: dict) -> list[str]:
    "The settings of a saved recipe that name a layer and act; an unknown setting naming a layer counts as acting."
    steps = []
    for name, value in recipe["settings"].items():
        if "layer" not in name:
            continue
        switch, off = INERT_UNLESS.get(name, (None, None))
        if switch is None or recipe["settings"][switch] != off:
            steps.append(f"{name}={value}")
    return steps


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    "A few steps of a tiny Qwen2.5 organism on the events task: its output folder."
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("organism")
    processor = organism_processor()
    config = organism_config(processor, num_layers=2, hidden_size=32, num_heads=2, num_kv_heads=1,
                             intermediate_size=64, vision_hidden_size=32, audio_d_model=32, audio_layers=1)
    train(out, TrainSettings(steps=2, batch_size=2, eval_every=1, n_val=12, warmup=1), model=build_organism(config),
          processor=processor, task="events", progress=False)
    return out


def test_the_events_recipe_names_no_layer(tiny_run):
    recipe = json.loads((tiny_run / RECIPE_FILE).read_text())
    assert recipe["task"] == "events" and recipe["settings"]["steps"] == 2
    assert layer_dependent_steps(recipe) == []


def test_the_check_sees_a_late_removal():
    settings = dict(late_removal=0.5, late_removal_layer=10, steps=2)
    assert layer_dependent_steps(dict(settings=settings)) == ["late_removal_layer=10"]
    assert layer_dependent_steps(dict(settings=dict(settings, late_removal=0.0, dropout_layer=3))) == ["dropout_layer=3"]


def test_the_curve_has_every_events_kind(tiny_run):
    curve = pd.read_csv(tiny_run / "training_log.csv")
    assert curve["step"].tolist() == [1, 2]
    assert [f"val_{kind}" for kind in EVENT_KINDS] + ["val_overall"] == [c for c in curve if c.startswith("val_")]


def test_a_late_removal_is_refused_for_events(tmp_path):
    with pytest.raises(ValueError, match="the events recipe names no layer"):
        train(tmp_path, steps=1, late_removal=0.5, task="events", progress=False)
    assert list(tmp_path.iterdir()) == []
