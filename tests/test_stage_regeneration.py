"""A regeneration carried over sessions (`dev/stage_regeneration.py`) comes back whole: what one worktree wrote, packed
in steps, unpacks into a fresh worktree at the same revision file for file (the ignored sweep answers too, deletions
too), and installs into a checkout as the tracked outputs alone."""
import importlib.metadata
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from seats_analysis.storage import code_revision

SCRIPT = Path(__file__).parents[1] / "dev" / "stage_regeneration.py"


@pytest.fixture(scope="module")
def stage_script():
    spec = importlib.util.spec_from_file_location("stage_regeneration", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git(folder: Path, *args) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


def write(folder: Path, files: dict):
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)


def outputs(folder: Path) -> dict:
    "Every file under the output folders, with its text."
    return {str(path.relative_to(folder)): path.read_text() for top in ("data", "figures") for path in
            sorted((folder / top).rglob("*")) if path.is_file()}


@pytest.fixture
def repository(tmp_path) -> Path:
    "A repository with code and committed outputs, its sweep folders ignored as in this one."
    origin = tmp_path / "origin"
    write(origin, {"code.py": "x = 1\n", ".gitignore": "data/results/*_sweep/\n.*.lock\n",
                   "data/results/a_results.csv": "old\n", "data/results/a_paired.csv": "old\n",
                   "figures/a.png": "old\n"})
    git(origin, "init", "-q")
    git(origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code", "--allow-empty")
    git(origin, "add", ".")
    git(origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "outputs")
    return origin


def clone(repository: Path, name: str) -> Path:
    folder = repository.parent / name
    subprocess.run(["git", "clone", "-q", str(repository), str(folder)], check=True)
    return folder


def test_a_staged_regeneration_comes_back_whole(stage_script, repository, tmp_path):
    stage, worktree = tmp_path / "stage", clone(repository, "worktree")
    write(worktree, {"data/results/a_results.csv": "new\n", "data/results/a_sweep/cell.jsonl": "half\n",
                     "data/results/a_sweep/.cell.lock": "pid\n"})
    assert stage_script.pack(worktree, stage).name == "000.tar.xz"
    assert stage_script.pack(worktree, stage) is None  # nothing new
    write(worktree, {"data/results/a_sweep/cell.jsonl": "whole\n", "figures/b.png": "new\n"})
    (worktree / "data/results/a_paired.csv").unlink()
    assert stage_script.pack(worktree, stage).name == "001.tar.xz"
    fresh = clone(repository, "fresh")
    stage_script.unpack(fresh, stage)
    made = outputs(worktree)
    del made["data/results/a_sweep/.cell.lock"]  # a writer's lock is not staged
    assert outputs(fresh) == made

    checkout = clone(repository, "checkout")
    stage_script.install(fresh, stage, checkout)
    assert not stage.exists()
    assert outputs(checkout) == {"data/results/a_results.csv": "new\n", "figures/a.png": "old\n",
                                 "figures/b.png": "new\n"}


def test_staging_refuses_another_revision(stage_script, repository, tmp_path):
    stage, worktree = tmp_path / "stage", clone(repository, "worktree")
    write(worktree, {"data/results/a_results.csv": "new\n"})
    stage_script.pack(worktree, stage)
    write(worktree, {"code.py": "x = 2\n"})
    code_revision.cache_clear()  # a process asks once; this one asks again after each change
    with pytest.raises(ValueError, match="committed code"):
        stage_script.pack(worktree, stage)
    git(worktree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "more code")
    code_revision.cache_clear()
    with pytest.raises(ValueError, match="holds a regeneration at"):
        stage_script.pack(worktree, stage)
    with pytest.raises(ValueError, match="the worktree is at"):
        stage_script.unpack(worktree, stage)


def test_staging_refuses_other_library_versions(stage_script, repository, tmp_path):
    stage, worktree = tmp_path / "stage", clone(repository, "worktree")
    write(worktree, {"data/results/a_results.csv": "new\n"})
    stage_script.pack(worktree, stage)
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["libraries"] == {name: importlib.metadata.version(name) for name in ("torch", "transformers")}
    manifest["libraries"]["torch"] = "0.1"  # the answers staged so far were another torch's
    (stage / "manifest.json").write_text(json.dumps(manifest))
    write(worktree, {"data/results/a_paired.csv": "new\n"})
    for step in (stage_script.pack, stage_script.unpack):
        with pytest.raises(ValueError, match="made with .'torch': '0.1'"):
            step(worktree, stage)
