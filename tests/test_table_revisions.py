"""Every committed results table names the code revision it was made with (`storage.stamped`), a commit of this
repository's history, and the organisms' tables (`data/results/`) all name the same one: one code state made them
(`dev/regenerate_organisms.py`)."""
import subprocess
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[1]
ORGANISM_TABLES = sorted((ROOT / "data" / "results").glob("*.csv"))
TABLES = ORGANISM_TABLES + sorted((ROOT / "data" / "benchmarks").glob("*.csv"))


def git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def revisions(table: Path) -> set:
    frame = pd.read_csv(table)
    assert "revision" in frame.columns, f"{table.name} does not say which code made it"
    return set(frame["revision"].astype(str))


@pytest.mark.parametrize("table", TABLES, ids=lambda path: path.name)
def test_a_results_table_names_one_committed_revision(table):
    [revision] = revisions(table)  # one, not rows from several code states
    assert not revision.endswith("-dirty") and revision != "unknown", revision
    if git("rev-parse", "--is-shallow-repository").stdout.strip() != "false":
        pytest.skip("not a full git clone: the history to find the revision in is missing")
    assert git("merge-base", "--is-ancestor", revision, "HEAD").returncode == 0, f"{revision} is not in HEAD's history"


def test_the_organisms_tables_name_one_revision():
    assert len(ORGANISM_TABLES) > 0
    made = {table.name: revisions(table) for table in ORGANISM_TABLES}
    assert len(set().union(*made.values())) == 1, made
