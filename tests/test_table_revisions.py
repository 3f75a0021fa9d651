"""Every committed results table names the code revision it was made with (`storage.stamped`), a commit of this
repository's history, and the organisms' tables (`data/results/`) all name the same one: one code state made them
(`dev/regenerate_organisms.py`). The committed tables of each installed organism are those of the steps the
regeneration script commits for it (`COMMITTED_STEPS`), each step's whole."""
import importlib.util
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr

from seats_analysis.catalog import ORGANISMS as ORGANISM_FOLDERS
from seats_analysis.organism import installed_organisms
from seats_analysis.storage import table_revisions

ROOT = Path(__file__).parents[1]
ORGANISMS = table_revisions(ROOT / "data" / "results")
TABLES = ORGANISMS | table_revisions(ROOT / "data" / "benchmarks")
STEP_TABLES = {"main": ("results", "paired"), "ablations": ("ablations",), "matched": ("matched", "matched_prefill"),
               "dycoke": ("dycoke_audio", "dycoke_kv")}  # step -> the suffixes of its tables, `<name>_<suffix>.csv`


def git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_a_results_table_names_one_committed_revision(name):
    assert len(TABLES[name]) == 1, f"{name} was made by {TABLES[name] or 'code it does not name'}"
    [revision] = TABLES[name]
    assert not revision.endswith("-dirty") and revision != "unknown", revision
    if git("rev-parse", "--is-shallow-repository").stdout.strip() != "false":
        pytest.skip("not a full git clone: the history to find the revision in is missing")
    assert git("merge-base", "--is-ancestor", revision, "HEAD").returncode == 0, f"{revision} is not in HEAD's history"


def test_the_organisms_tables_name_one_revision():
    assert ORGANISMS, "no organism table is committed"
    assert len({revision for made in ORGANISMS.values() for revision in made}) == 1, ORGANISMS


@pytest.mark.parametrize("library", ["torch", "transformers"])
def test_the_organisms_tables_name_one_library_version(library):
    # near-tied answers differ between torch releases, so one code state includes the libraries; the probe tables the
    # schedules come from too
    versions = {}
    for path in sorted((ROOT / "data" / "results").glob("*.csv")):
        table = pd.read_csv(path, dtype=str)
        if "revision" in table:
            versions[path.name] = sorted(table[library].unique()) if library in table else ["not named"]
    for results in sorted((ROOT / "data" / "results").glob("*_results.csv")):  # each main job's probe
        with xr.open_dataset(str(results).replace("_results.csv", "_probe/probe.nc")) as probe:
            made = json.loads(probe.attrs["versions"])[library]
            versions[results.name.replace("_results.csv", "_probe")] = [made.split("+")[0]]  # not the local build
    assert len({version for made in versions.values() for version in made}) == 1, versions


def test_each_organism_has_the_tables_of_its_committed_steps():
    spec = importlib.util.spec_from_file_location("regenerate_organisms", ROOT / "dev" / "regenerate_organisms.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert set(STEP_TABLES) == set(script.STEPS)
    assert set(script.COMMITTED_STEPS) <= set(ORGANISM_FOLDERS)
    for organism in installed_organisms():
        name, steps = ORGANISM_FOLDERS[organism], script.COMMITTED_STEPS.get(organism, script.STEPS)
        committed = {f"{name}_{suffix}.csv" for step in steps for suffix in STEP_TABLES[step]}
        possible = {f"{name}_{suffix}.csv" for suffixes in STEP_TABLES.values() for suffix in suffixes}
        present = {path.name for path in (ROOT / "data" / "results").glob(f"{name}_*.csv")} & possible
        assert present == committed, f"{organism}: committed {sorted(present)}, its steps {steps} make {sorted(committed)}"
