"""nbdev's documentation step runs every notebook without error, from any working directory.

The step (the processors behind `nbdev_preview`, `nbdev_docs` and `nbdev_readme`) runs only the cells that export
or import, so a notebook whose import cell uses a name defined in another cell breaks it, and a cell that mixes
imports with other code runs whole (nbdev warns of it; here it fails, so that the step stays an import check and no
example or sweep runs twice in the tests). Quarto is not needed: the processors are run directly, as nbdev runs them
for each notebook."""
import pytest
from execnb.nbio import read_nb
from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.processors import FilterDefaults

cfg = get_config()
NOTEBOOKS = sorted(nbglob(cfg.nbs_path, as_path=True))


@pytest.mark.filterwarnings("error:Found cells containing imports and other code")
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_doc_step(nb, tmp_path, monkeypatch):
    monkeypatch.setenv("IN_TEST", "1")  # as nbdev's own driver sets it: exports are not re-run
    monkeypatch.chdir(tmp_path)
    FilterDefaults()(read_nb(nb))


def test_cells_nbdev_skips_jupyter_skips_too():
    """A cell marked `#| eval: false` (maintainers' runs that rewrite shipped files) is tagged `skip-execution`, so
    that `jupyter nbconvert --execute` leaves it out as nbdev does; script guards (`__main__`) are safe and exempt."""
    untagged = []
    for nb in NOTEBOOKS:
        for cell in read_nb(nb).cells:
            source = cell.source
            if cell.cell_type == "code" and "#| eval: false" in source and '__name__ == "__main__"' not in source:
                if "skip-execution" not in cell.metadata.get("tags", []):
                    untagged.append(f"{nb.name} cell {cell.idx_}")
    assert not untagged, untagged
