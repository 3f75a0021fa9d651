"""An events organism's saved recipe names no decoder layer: a tiny training run writes `training_recipe.json` beside
its model, and nothing in it removes tokens (or does anything else) at a fixed depth; nor do the runs of the training
driver (`dev/train_organisms.py`), whose band check picks the checkpoints worth testing."""
import dataclasses
import functools
import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import xarray as xr

from seats_analysis.catalog import ORGANISMS
from seats_analysis.demo import organism_schedule
from seats_analysis.events import EVENT_KINDS, event_items
from seats_analysis.organism import (RECIPE_FILE, TrainSettings, accuracy_by_kind, build_organism, load_organism,
                                     organism_config, organism_processor, organism_task, predict, train,
                                     training_recipe)
from seats_analysis.schedule import Schedule

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
    acting = layer_dependent_steps(dict(settings=dict(settings, late_removal=0.0, dropout_layer=3)))
    assert acting == ["dropout_layer=3"]


def test_the_curve_has_every_events_kind(tiny_run):
    curve = pd.read_csv(tiny_run / "training_log.csv")
    assert curve["step"].tolist() == [1, 2]
    assert [f"val_{kind}" for kind in EVENT_KINDS] + ["val_overall"] == [c for c in curve if c.startswith("val_")]
    assert curve["tally_loss"].gt(0).all()  # the events recipe counts the sounds heard so far


def test_a_late_removal_is_refused_for_events(tmp_path):
    with pytest.raises(ValueError, match="the events recipe names no layer"):
        train(tmp_path, steps=1, late_removal=0.5, task="events", progress=False)
    assert list(tmp_path.iterdir()) == []


def training_driver():
    "The events organisms' training driver, `dev/train_organisms.py`, imported from its file."
    path = Path(__file__).parents[1] / "dev" / "train_organisms.py"
    spec = importlib.util.spec_from_file_location("train_organisms", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_drivers_runs_name_no_layer():
    driver = training_driver()
    assert {run.family for run in driver.RUNS.values()} == {"qwen2_5", "qwen3"}  # both families
    assert len({run.seed for run in driver.RUNS.values() if run.family == "qwen2_5"}) >= 2  # two seeds of one
    for name, run in driver.RUNS.items():
        settings = dataclasses.replace(driver.SETTINGS, seed=run.seed)
        recipe = training_recipe(organism_task("events"), settings, run.family, False)
        assert layer_dependent_steps(recipe) == [] and name in ORGANISMS, name


def test_the_band_keeps_good_unsaturated_steps(tmp_path):
    curve = pd.DataFrame(dict(step=[100, 200, 300, 400, 500], val_flash=[50.0, 85, 96, 90, 88],
                              val_count=[60.0, 90, 90, 99, 79], val_overall=[55.0, 87, 93, 91, 80]))
    curve.to_csv(tmp_path / "training_log.csv", index=False)
    band = training_driver().band_steps(tmp_path / "training_log.csv")
    assert band.step.tolist() == [200, 500]  # 300: over 92 overall; 400: a kind over 95


def test_the_band_of_a_test_split():
    in_band = training_driver().in_band
    assert in_band(dict(flash=95.0, count=70.0, overall=80.0)) and in_band(dict(flash=91.0, overall=92.0))
    assert not in_band(dict(flash=95.5, count=80.0, overall=87.0))  # a kind over 95
    assert not in_band(dict(flash=90.0, overall=79.9)) and not in_band(dict(flash=93.0, overall=92.1))


def test_a_checkpoint_on_the_test_split(tiny_run, tmp_path):
    driver, checkpoint = training_driver(), tmp_path / "qwen3" / "checkpoints" / "step_2"
    shutil.copytree(tiny_run, checkpoint)
    accuracy = driver.accuracy_on_test_split("qwen3", 2, tmp_path, items=7, chunk=3)  # chunks of 3, 3 and 1 items
    items, (model, processor) = list(event_items("test", 7)), load_organism(tiny_run)  # all at once: the same letters
    letters, random = predict(model, processor, items), driver.random_letters(model, processor, items)
    assert accuracy == dict(full=accuracy_by_kind(items, letters), random_R10=accuracy_by_kind(items, random))
    stored = json.loads((checkpoint / "test_predictions.json").read_text())
    assert stored == dict(full=letters, random_R10=random)
    assert json.loads((checkpoint / "test_accuracy.json").read_text()) == dict(items=7, accuracy=accuracy)


def test_install_copies_a_probed_checkpoint_once(tiny_run, tmp_path):
    driver = training_driver()
    runs, data, schedules = tmp_path / "runs", tmp_path / "data", tmp_path / "schedules"
    shutil.copytree(tiny_run, runs / "qwen2_5" / "checkpoints" / "step_2")
    install = functools.partial(driver.install, "qwen2_5", 2, runs, data, schedules, items=14)
    with pytest.raises(ValueError, match="run --probe 2 --probe-items 14 first"):
        install()  # no probe yet
    driver.probe_checkpoint("qwen2_5", 2, runs, items=7)
    with pytest.raises(ValueError, match="no probe of the first 14 validation items"):
        install()  # a probe of other items
    shutil.rmtree(runs / "qwen2_5" / "checkpoints" / "step_2" / "probe")
    table, _ = driver.probe_checkpoint("qwen2_5", 2, runs, items=14)
    # the tiny model reads nothing: its curves are made those of one that has read its media by layer 2 of 2
    table["accuracy"].loc[dict(condition="both", layer=1)], table["accuracy_ref"][:] = 0.0, 1.0
    table["accuracy"].loc[dict(condition="both", layer=2)] = 1.0
    table.to_netcdf(runs / "qwen2_5" / "checkpoints" / "step_2" / "probe" / "probe.nc")
    folder = install()
    assert folder == data / ORGANISMS["qwen2_5"] and not (folder / "probe").exists()
    assert (folder / "model.safetensors").read_bytes() == (tiny_run / "model.safetensors").read_bytes()
    probed = data / "results" / f"{folder.name}_probe"
    assert xr.load_dataset(probed / "probe.nc").identical(table)  # the store the main job would reuse
    _, derived = organism_schedule(table, late_tolerance=driver.ORGANISM_LATE_TOLERANCE, name=folder.name)
    installed = Schedule.load(schedules / f"{folder.name}.json")
    assert installed.model_name == f"seats-analysis/{folder.name}"
    assert installed.late_block_layer == derived.late_block_layer == 2
    assert installed.provenance["probe_items"]["num_items"] == 14
    assert installed.provenance["probe_file"] == f"data/results/{folder.name}_probe/probe.nc"
    with pytest.raises(FileExistsError):
        install()
    with pytest.raises(FileNotFoundError, match="no checkpoint of qwen2_5 at step 3"):
        driver.install("qwen2_5", 3, runs, data, schedules, items=14)


def test_a_checkpoint_probed_as_the_main_job_would(tiny_run, tmp_path):
    driver, checkpoint = training_driver(), tmp_path / "qwen2_5" / "checkpoints" / "step_2"
    shutil.copytree(tiny_run, checkpoint)
    table, curves = driver.probe_checkpoint("qwen2_5", 2, tmp_path, items=14)
    assert table.sample.values.tolist() == [f"events-validation-0-{i}" for i in range(14)]
    assert (checkpoint / "probe" / "probe.nc").is_file()
    assert curves.index.tolist() == sorted(EVENT_KINDS) and curves.columns.tolist() == [1, 2]
    # two items of each kind: the mean of the kinds' curves is the whole probe's
    overall = 100 * table["accuracy"].sel(condition="both").mean("sample").values
    assert curves.mean().round(6).tolist() == overall.round(6).tolist()
    kind = table["accuracy"].sel(condition="both", sample=["events-validation-0-4", "events-validation-0-11"])
    assert curves.loc["count"].tolist() == (100 * kind.mean("sample").values).tolist()  # items 4 and 11: count
    again_table, again = driver.probe_checkpoint("qwen2_5", 2, tmp_path, items=14)  # again, its store in place: the same
    assert again.equals(curves) and again_table["accuracy"].equals(table["accuracy"])


def test_the_probe_command_reports_a_model_without_blocks(tiny_run, tmp_path, capsys, monkeypatch):
    driver = training_driver()
    shutil.copytree(tiny_run, tmp_path / "qwen2_5" / "checkpoints" / "step_2")

    def no_late_block(*args, **kwargs):
        raise ValueError("no late block: read at the last layer")
    monkeypatch.setattr(driver, "organism_schedule", no_late_block)
    assert driver.main(["--folder", str(tmp_path), "--runs", "qwen2_5", "--probe", "2", "--probe-items", "7"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "qwen2_5 step 2: no schedule (no late block: read at the last layer)"
    assert printed[1].split() == ["layer", "1", "2"] and len(printed) == 2 + 7  # the curves: a row per question kind


def test_random_keeps_every_token_at_ratio_one(tiny_run, monkeypatch):
    driver, (model, processor) = training_driver(), load_organism(tiny_run)
    items = list(event_items("test", 7))
    monkeypatch.setitem(driver.RATIO_PAIRS, "R10", (1.0, 1.0))  # Random keeping everything answers as all tokens do
    assert driver.random_letters(model, processor, items) == predict(model, processor, items)
