"""Every committed results table names the code revision it was made with (`storage.stamped`), a commit of this
repository's history, and the organisms' tables (`data/results/`) all name the same one: one code state made them
(`dev/regenerate_organisms.py`)."""
import subprocess
from pathlib import Path

import pytest

from seats_analysis.storage import table_revisions

ROOT = Path(__file__).parents[1]
ORGANISMS = table_revisions(ROOT / "data" / "results")
TABLES = ORGANISMS | table_revisions(ROOT / "data" / "benchmarks")


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
