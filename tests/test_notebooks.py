"""Run every notebook in `nbs/` as one pytest test, the way `nbdev_test` would."""
from pathlib import Path

import pytest
from nbdev.config import get_config
from nbdev.doclinks import nbglob
import nbdev.test as nbt

from seats_analysis.testing import released_shells

cfg = get_config()
NOTEBOOKS = sorted(Path(p) for p in nbglob(cfg.nbs_path))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_notebook(nb):
    flags = cfg.get("tst_flags", "").split()
    with released_shells():  # the notebook's shell ends with it, not at the worker's exit
        ok, duration = nbt.test_nb(nb, skip_flags=flags, basepath=cfg.config_path)
    assert ok, f"{nb.name} failed (see the traceback above)"
