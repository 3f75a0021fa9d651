"""Train the events organisms (`21_organism`: the events task, a recipe that names no layer), resumably.

    python dev/train_organisms.py                                  # every run, one after another
    python dev/train_organisms.py --runs qwen3 --workers 12 --time-limit 3000

Each run keeps its state file in the runs folder (`data/training/` by default) every `eval_every` steps, and starts
from it when there is one, so a stopped run (`--time-limit`, a machine given back) goes on where it stopped, on a CPU or
a GPU alike. Only the state files and the curves are tracked by git; commit a state file when a stint of training ends,
not at every save, since each commit of it adds its whole size (a model and its optimiser's moments) to the history.
Every validated model is kept (`keep_checkpoints`, untracked), with the curve in `<run>/training_log.csv` (a column per
question kind), so that a checkpoint in the target band can be chosen:

    python dev/train_organisms.py --band                           # each run's validated steps in the band
    python dev/train_organisms.py --runs qwen3 --test 1800         # its checkpoint at step 1800 on the test split
    python dev/train_organisms.py --runs qwen3 --probe 1800        # the blocks the main job would derive from it
    python dev/train_organisms.py --runs qwen3 --probe 1800 --probe-items 1008
    python dev/train_organisms.py --runs qwen3 --install 1800      # that checkpoint, its probe and schedule installed

The band is the one the test split must show: 80-92% overall with no question kind above 95%. A checkpoint is chosen
on the validation curve (`--band`); `--test` then answers the whole test split with all tokens (what the main job's
`full` row will show) and with Random at R10, writes both beside the checkpoint (`test_accuracy.json`) and says whether
the first is in the band and the second at least `RANDOM_GAP` points below it.
`--probe` runs the main job's probe and block rule on a checkpoint (the first `--probe-items` validation items, the
store beside the checkpoint, so a stopped probe goes on) and prints the blocks, the drop layers and the accuracy with
both modalities removed before each layer, per question kind: where the model reads its media (the curves are printed
also where the block rule finds no schedule, with its reason). `--install` needs the probe of as many validation
items as the test split holds (what the main job probes), and installs the model, that probe's store and the schedule
it gives, as the main job's reference run would write them, into the folder `catalog.ORGANISMS` names for the run:
from then on it is one of `organism.installed_organisms()` (and `setup.py` packs it), with no change to the code.
"""
import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from seats_analysis.blocks import group_curves
from seats_analysis.catalog import ORGANISMS, RATIO_PAIRS
from seats_analysis.demo import (ORGANISM_LATE_TOLERANCE, PROBE_SPLIT, blocks_line, organism_records, organism_samples,
                                 organism_schedule, probe_items)
from seats_analysis.evaluate import sample_seed
from seats_analysis.events import EVENT_TEST_ITEMS, event_items
from seats_analysis.harness import OptionLogits, run_samples
from seats_analysis.organism import (TrainSettings, accuracy_by_kind, build_organism, load_organism, organism_config,
                                     organism_processor, organism_task, predict, train)
from seats_analysis.probe import probe
from seats_analysis.schedule import SCHEDULES_DIR, Schedule, text_num_layers
from seats_analysis.synth import LETTERS, answer_token_ids, fast_inputs, media_ids

class Run(NamedTuple):
    "A training run: its family and the seed of its data and initial weights (its folder: `catalog.ORGANISMS[name]`)."
    family: str
    seed: int
    num_layers: int = 12  # decoder layers


# The Qwen3 run has 16 decoder layers: at 12 (`data/training/qwen3_12_layers/`, step 1,800: 81.5% on the test split),
# the probe found its counting kinds read only at the last layer, so no middle block (see `21_organism`).
# qwen2_5_seed1 is in the band at steps 2,200-2,400, but its probe finds no late block at any of them and a middle
# block from layer 11: one drop layer (21_organism), so the recipe is run from a third seed.
RUNS = {"qwen2_5": Run("qwen2_5", 0), "qwen2_5_seed1": Run("qwen2_5", 1), "qwen2_5_seed2": Run("qwen2_5", 2),
        "qwen3": Run("qwen3", 0, num_layers=16)}
DATA = Path(__file__).resolve().parents[1] / "data"
# 40 validation items of each kind; the tallies train the decoder to count the sounds at the audio positions
SETTINGS = TrainSettings(steps=2400, eval_every=100, n_val=280, tally_weight=0.1, decay_from=1500)
BAND = (80.0, 92.0)  # overall validation accuracy, percent
KIND_CEILING = 95.0  # no question kind above it
RANDOM_GAP = 10.0  # points Random at R10 must lose against all tokens on the test split
PROBE_ITEMS = 280  # validation items `--probe` reads by default: 40 of each kind


def in_band(accuracy: dict) -> bool:
    "Whether accuracies in percent ({kind: ..., 'overall': ...}) are in `BAND` with no kind above `KIND_CEILING`."
    kinds = [value for kind, value in accuracy.items() if kind != "overall"]
    return BAND[0] <= accuracy["overall"] <= BAND[1] and max(kinds) <= KIND_CEILING


def band_steps(log: Path) -> pd.DataFrame:
    "The validated steps of a training curve whose accuracy is in `BAND` with no kind above `KIND_CEILING`."
    curve = pd.read_csv(log)
    kinds = [c for c in curve.columns if c.startswith("val_") and c != "val_overall"]
    inside = [in_band({**row[kinds], "overall": row.val_overall}) for _, row in curve.iterrows()]
    return curve.loc[inside, ["step", "val_overall", *kinds]]


def random_letters(model, processor, items, setting: str = "R10") -> list[str]:
    """The answer letter of each of `items` with Random at `setting` (a key of `RATIO_PAIRS`), one item per forward,
    each item its own draw (`evaluate.sample_seed`, as the main job seeds it). Random reads nothing of a schedule but
    its layer count, so it is given one with no blocks."""
    video, audio = RATIO_PAIRS[setting]
    scorer, media = OptionLogits(answer_token_ids(processor), LETTERS), media_ids(processor)
    schedule = Schedule(model_name="random-check", num_layers=text_num_layers(model.config), middle_block_layer=None,
                        late_block_layer=None, drop_layers=[], provenance=dict(source="manual"))
    runs = run_samples(model, items, scorer, "random", schedule, video, audio,
                       prepare=lambda item: (fast_inputs(processor, [item], media).to(model.device), True),
                       sample_seed=lambda item: sample_seed(0, "organism", item["id"]))
    return [letter for run in runs for letter in run.result.predictions]


def accuracy_on_test_split(name: str, step: int, runs: Path, items: int = EVENT_TEST_ITEMS,
                           chunk: int = 96) -> dict:
    """Accuracy per kind and overall of run `name`'s checkpoint at `step` on the first `items` of the events test split
    (by default all of it), with all tokens kept and with Random at R10 (`{"full": ..., "random_R10": ...}`), `chunk`
    clips held at a time; written beside the checkpoint (`test_accuracy.json`) with the letters answered
    (`test_predictions.json`)."""
    checkpoint = runs / name / "checkpoints" / f"step_{step}"
    model, processor = load_organism(checkpoint)
    answered, letters, random = [], [], []
    for start in tqdm(range(0, items, chunk), desc=f"{name} step {step}, test split"):
        part = list(event_items("test", min(chunk, items - start), start=start))
        letters += predict(model, processor, part)
        random += random_letters(model, processor, part)
        answered += [dict(kind=item["kind"], answer=item["answer"]) for item in part]  # the clips are let go
    accuracy = dict(full=accuracy_by_kind(answered, letters), random_R10=accuracy_by_kind(answered, random))
    (checkpoint / "test_accuracy.json").write_text(json.dumps(dict(items=items, accuracy=accuracy), indent=1))
    (checkpoint / "test_predictions.json").write_text(json.dumps(dict(full=letters, random_R10=random)))
    return accuracy


def probe_checkpoint(name: str, step: int, runs: Path, items: int = PROBE_ITEMS) -> tuple:
    """The main job's probe of run `name`'s checkpoint at `step` on the first `items` validation items (its store
    `probe/` beside the checkpoint, under the name the main job gives the installed organism): (the probe table, the
    accuracy in percent with both modalities removed before each layer, a row per question kind)."""
    checkpoint = runs / name / "checkpoints" / f"step_{step}"
    model, processor = load_organism(checkpoint)
    records = organism_records(items, 0, PROBE_SPLIT, organism_task("events"))
    table = probe(model, organism_samples(processor, records), model_name=f"seats-analysis/{ORGANISMS[name]}",
                  path=checkpoint / "probe")
    return table, group_curves(table, {record.id: record.categories["kind"] for record in records})


def train_run(name: str, runs: Path, device: str, workers: int, time_limit_s: float | None):
    "Train (or go on training) the run `name` into `runs/name`, its state in `runs/name.state`."
    run = RUNS[name]
    processor = organism_processor(run.family)
    model = build_organism(organism_config(processor, num_layers=run.num_layers), seed=run.seed).to(device)
    train(runs / name, dataclasses.replace(SETTINGS, seed=run.seed), model=model, processor=processor,
          state_path=runs / f"{name}.state", time_limit_s=time_limit_s, num_workers=workers, family=run.family,
          task="events", keep_checkpoints=True)


def install(name: str, step: int, runs: Path, data: Path = DATA, schedules: Path = SCHEDULES_DIR,
            items: int = EVENT_TEST_ITEMS) -> Path:
    """Install the checkpoint of run `name` at `step` as the main job would leave it: the model in its folder under
    `data`, its probe store (`--probe` on `items` validation items, as many as the main job probes: the test split's
    size) in `data/results/<folder>_probe/`, and the schedule the main job derives from that probe in
    `schedules/<folder>.json`. Refused where the folder exists or the probe read other items."""
    family, folder = RUNS[name].family, ORGANISMS[name]
    checkpoint = runs / name / "checkpoints" / f"step_{step}"
    store = checkpoint / "probe"
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint of {name} at step {step} in {checkpoint}")
    records = organism_records(items, 0, PROBE_SPLIT, organism_task("events"))
    table = xr.load_dataset(store / "probe.nc") if (store / "probe.nc").is_file() else None
    if table is None or table.sample.values.tolist() != [record.id for record in records]:
        raise ValueError(f"{name} step {step} has no probe of the first {items} {PROBE_SPLIT} items: "
                         f"run --probe {step} --probe-items {items} first")
    _, schedule = organism_schedule(table, late_tolerance=ORGANISM_LATE_TOLERANCE, name=folder, family=family)
    probed = data / "results" / f"{folder}_probe"
    schedule.provenance.update(probe_file=f"{probed.relative_to(data.parent)}/probe.nc",
                               probe_items=probe_items(records, PROBE_SPLIT))
    shutil.copytree(checkpoint, data / folder, ignore=shutil.ignore_patterns("probe"))  # refuses an existing folder
    shutil.copytree(store, probed)
    schedule.save(schedules / f"{folder}.json")
    return data / folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {', '.join(RUNS)}")
    parser.add_argument("--folder", type=Path, default=DATA / "training", help="the runs folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=0, help="processes that build the batches")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds each run may take before it stops")
    parser.add_argument("--band", action="store_true", help="list each run's validated steps in the band; train none")
    parser.add_argument("--test", type=int, metavar="STEP", help="each run's checkpoint at STEP on the test split")
    parser.add_argument("--probe", type=int, metavar="STEP", help="the main job's blocks from each run's checkpoint")
    parser.add_argument("--probe-items", type=int, default=PROBE_ITEMS, help="validation items --probe reads")
    parser.add_argument("--install", type=int, metavar="STEP",
                        help="install each run's checkpoint at STEP, its probe and its schedule (see above)")
    args = parser.parse_args(argv)
    names = args.runs.split(",")
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs: {unknown}")
    if args.threads:  # for training, --test and --probe alike
        torch.set_num_threads(args.threads)
    if args.band:
        for name in names:
            log = args.folder / name / "training_log.csv"
            print(f"{name}:", band_steps(log).to_string(index=False) if log.is_file() else "no training curve yet")
        return 0
    if args.test is not None:
        for name in names:
            accuracy = accuracy_on_test_split(name, args.test, args.folder)
            for row, values in accuracy.items():
                shown = ", ".join(f"{kind} {value:.1f}" for kind, value in values.items())
                print(f"{name} step {args.test}, {row}: {shown}")
            gap = accuracy["full"]["overall"] - accuracy["random_R10"]["overall"]
            print(f"{'in' if in_band(accuracy['full']) else 'not in'} the band; Random at R10 {gap:.1f} points below "
                  f"all tokens ({'at least' if gap >= RANDOM_GAP else 'less than'} {RANDOM_GAP:g})")
        return 0
    if args.probe is not None:
        for name in names:
            table, curves = probe_checkpoint(name, args.probe, args.folder, args.probe_items)
            try:
                blocks, schedule = organism_schedule(table, late_tolerance=ORGANISM_LATE_TOLERANCE, name=name,
                                                     family=RUNS[name].family)
                found = blocks_line(blocks, schedule)
            except ValueError as error:  # a model still reading its media at the last layer has no late block
                found = f"no schedule ({error})"
            print(f"{name} step {args.probe}: {found}")
            print(curves.round(1).to_string())
        return 0
    if args.install is not None:
        for name in names:
            print(f"{name}: installed in {install(name, args.install, args.folder)}")
        return 0
    for name in names:
        train_run(name, args.folder, args.device, args.workers, args.time_limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
