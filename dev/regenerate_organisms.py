"""Regenerate every committed table and figure of the model organisms from one code state.

    python dev/regenerate_organisms.py                      # every organism, its whole test split, into the repository
    python dev/regenerate_organisms.py --organisms qwen3_imposed --steps main,ablations

For each installed organism (`organism.installed_organisms`: those of `catalog.ORGANISMS` whose weights are in their
folder), on the task it learned (`organism.learned_task`), in this order (each step reads the schedule the main job
wrote):

- main: the main job on the committed outputs (`demo.run_demo` into `DemoPaths.reference`): the probe on validation
  items, the blocks and the shipped schedule, every method at R35-R10 on test items, the results and paired tables
  and the figures;
- ablations: the stage ablations at full SEATS' compute (`ablations.run_ablations`);
- matched: every baseline against SEATS at its compute, counted on the decoder and on the whole prefill
  (`matched.run_matched`, both `compute`s), with the figure of the first; both answer into the main job's sweep
  folder, so their baselines' answers are the main table's, answered once;
- dycoke: the DyCoke-om study (`dycoke_study.run_dycoke_study`).

Not every organism runs every step: `COMMITTED_STEPS` names the steps whose tables are committed for each (the
studies of equal compute and DyCoke for one events organism of each family, the ablations for every events organism,
the main job alone for the imposed ones), and `--steps` chooses others.

Every table records the code revision it was made with (`storage.stamped`), so the code must be committed first: a
tree with uncommitted changes outside the outputs (`storage.OUTPUT_PATHS`: `data/`, `figures/`, the organisms'
schedules) is refused. Committing the outputs leaves the revision as it was. The organisms' tables in `data/results/`
must all name one revision, so a regeneration that takes several sessions runs in a git worktree at its revision
(`PYTHONPATH=.`, so that it imports the worktree's package) and its outputs wait in `data/regeneration/` between
sessions (`dev/stage_regeneration.py`) until every organism's are made. Every step resumes from its sweep folder
(`data/results/*_sweep/`, ignored by git), so a stopped run goes on where it stopped when started again at the same
revision. By default every cell has the organism's whole test split (600 synth items, 1,008 events items); on a 2-core
CPU an organism takes several hours.
"""
import argparse
import sys
from pathlib import Path

import torch

from seats_analysis.ablations import run_ablations
from seats_analysis.demo import ROOT, DemoPaths, run_demo
from seats_analysis.dycoke_study import run_dycoke_study
from seats_analysis.matched import matched_figure, run_matched
from seats_analysis.catalog import ORGANISMS
from seats_analysis.organism import installed_organisms, learned_task
from seats_analysis.storage import code_revision, is_committed_revision

STEPS = ("main", "ablations", "matched", "dycoke")
COMMITTED_STEPS = {"qwen2_5": STEPS, "qwen3": STEPS, "qwen2_5_seed2": ("main", "ablations"),
                   "qwen2_5_imposed": ("main",), "qwen3_imposed": ("main",)}  # an organism not named: every step


def regenerate(organism: str, steps, items: int | None):
    "The steps of one organism, in order, into the repository's committed outputs (`items` None: its whole test split)."
    results, name, task = ROOT / "data" / "results", ORGANISMS[organism], learned_task(organism)
    items = items or task.test_items
    print(f"{organism}: {', '.join(steps)} on {items} {task.name} items a cell")
    if "main" in steps:
        run_demo(DemoPaths.reference(organism), num_items=items, organism=organism, report=print)
    if "ablations" in steps:
        run_ablations(organism, results, num_items=items)
    if "matched" in steps:
        matched_figure(run_matched(organism, results, num_items=items), ROOT / "figures" / f"{name}_matched",
                       title=f"{name}: each baseline and SEATS at the same decoder GFLOPs")
        run_matched(organism, results, num_items=items, compute="prefill")
    if "dycoke" in steps:
        run_dycoke_study(organism, results, num_items=items)


def main(argv=None) -> int:
    parser, installed = argparse.ArgumentParser(description=__doc__.splitlines()[0]), installed_organisms()
    parser.add_argument("--organisms", default=",".join(installed),
                        help=f"comma-separated, from the installed {', '.join(installed)}")
    parser.add_argument("--steps", default=None,
                        help=f"comma-separated, from {', '.join(STEPS)} (default: each organism's COMMITTED_STEPS)")
    parser.add_argument("--items", type=int, default=None,
                        help="test items per cell (and probe items; default: the organism's whole test split)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    if ROOT != Path(__file__).resolve().parents[1]:
        parser.error(f"the package imported is {ROOT}'s, not this checkout's: run it with PYTHONPATH=.")
    organisms = args.organisms.split(",")
    steps = {organism: args.steps.split(",") if args.steps else COMMITTED_STEPS.get(organism, STEPS)
             for organism in organisms}
    chosen = {step for organism_steps in steps.values() for step in organism_steps}
    unknown = sorted(set(organisms) - set(installed)) + sorted(chosen - set(STEPS))
    if unknown:
        parser.error(f"unknown or uninstalled organisms, or unknown steps: {unknown}")
    revision = code_revision()
    if not is_committed_revision(revision):
        parser.error(f"the code is at revision {revision!r}: commit it first, so that every table names one revision")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"regenerating {organisms} at revision {revision}")
    for organism in organisms:
        regenerate(organism, steps[organism], args.items)
    return 0


if __name__ == "__main__":
    sys.exit(main())
