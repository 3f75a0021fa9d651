"""Carry a regeneration of the organisms' tables over several sessions, packed in the repository until it is whole.

Every organism's tables in `data/results/` must name one code revision (`tests/test_table_revisions.py`), and on a
2-core CPU a regeneration takes several sessions, whose machines may start empty. So the regeneration runs in a git
worktree at its revision, and between sessions its outputs wait in `data/regeneration/`, where no test reads them:

    git worktree add ../regeneration REVISION
    cd ../regeneration && PYTHONPATH=. python dev/regenerate_organisms.py --organisms qwen2_5 --threads 1
    python dev/stage_regeneration.py pack ../regeneration      # from this checkout, before the session ends
    python dev/stage_regeneration.py unpack ../regeneration    # into a new worktree at REVISION, before going on
    python dev/stage_regeneration.py install ../regeneration   # once every organism is done

Every session's answers must come from one torch and one transformers (near-tied answers differ between releases),
so the staging records the versions its first `pack` ran under, and `pack` and `unpack` refuse any others.
`pack` adds to `data/regeneration/` an archive of the worktree's outputs (`storage.OUTPUT_PATHS`, and the folder of an
organism installed there) that differ from what the archives already hold, sweep folders included, so that a step
stopped half way goes on from its answers; `unpack` extracts every archive, in order, into the worktree. `install`
copies the worktree's outputs that git tracks (the sweep folders stay ignored) into this checkout, deletes what the
worktree deleted, and removes `data/regeneration/`: commit that with the notebooks run again on the new tables.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from seats_analysis.storage import OUTPUT_PATHS, code_revision, file_digest, is_committed_revision, library_versions

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "data" / "regeneration"
MANIFEST = "manifest.json"  # in the staging folder: revision, libraries, archives and files ({path: digest})
SKIPPED = ("data/training/", "data/cache/", "data/regeneration/")  # not outputs of a regeneration


def check_libraries(manifest: dict) -> dict:
    "This environment's `storage.library_versions`, refused when the staged answers were made with others."
    here = library_versions()
    staged = manifest.get("libraries", here)  # a staging from before the versions were recorded: this one's
    if staged != here:
        raise ValueError(f"the staged regeneration's answers were made with {staged}; this environment has {here}, "
                         f"and near-tied answers differ between releases: install those versions")
    return here


def git(worktree: Path, *args) -> str:
    return subprocess.run(["git", "-C", str(worktree), *args], capture_output=True, text=True, check=True).stdout


def changed_outputs(worktree: Path, ignored: bool) -> tuple[list[str], list[str]]:
    """The worktree's output files that differ from its commit, and those it deleted: with `ignored`, git's ignored
    files (the sweep folders) too."""
    status = git(worktree, "status", "--porcelain", "--untracked-files=all", *(["--ignored"] if ignored else []),
                 "--", *OUTPUT_PATHS)
    changed, deleted = [], []
    for line in status.splitlines():
        code, path = line[:2], line[3:]
        if path.startswith(SKIPPED) or Path(path).name.endswith(".lock"):  # a writer's lock, not an output
            continue
        (deleted if "D" in code else changed).append(path)
    return changed, deleted


def pack(worktree: Path, stage: Path = STAGE) -> Path | None:
    """Archive the worktree's outputs that the staged archives do not already hold, as they are now, and note the
    ones it deleted; None if nothing changed."""
    revision = code_revision(worktree)
    if not is_committed_revision(revision):
        raise ValueError(f"the worktree's code is at {revision!r}: a regeneration runs on committed code")
    manifest_file = stage / MANIFEST
    manifest = (json.loads(manifest_file.read_text()) if manifest_file.is_file()
                else dict(revision=revision, archives=[], files={}))
    if manifest["revision"] != revision:
        raise ValueError(f"data/regeneration/ holds a regeneration at {manifest['revision']}; the worktree is at "
                         f"{revision}")
    libraries = check_libraries(manifest)
    changed, deleted = changed_outputs(worktree, ignored=True)
    now = {path: file_digest(worktree / path) for path in changed} | dict.fromkeys(deleted)  # None: deleted
    new = {path: digest for path, digest in sorted(now.items()) if manifest["files"].get(path, "") != digest}
    if not new:
        return None
    stage.mkdir(parents=True, exist_ok=True)
    archive = stage / f"{len(manifest['archives']):03d}.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for path in (path for path, digest in new.items() if digest):
            tar.add(worktree / path, arcname=path)
    manifest["archives"].append(archive.name)
    manifest["files"].update(new)
    manifest["libraries"] = libraries
    manifest_file.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return archive


def unpack(worktree: Path, stage: Path = STAGE):
    """Extract every staged archive, in the order they were packed, into the worktree at the staged revision, and
    delete the outputs the regeneration deleted."""
    manifest = json.loads((stage / MANIFEST).read_text())
    revision = code_revision(worktree)
    if revision != manifest["revision"]:
        raise ValueError(f"the staged regeneration is at {manifest['revision']}; the worktree is at {revision}")
    check_libraries(manifest)
    for name in manifest["archives"]:
        with tarfile.open(stage / name) as tar:
            tar.extractall(worktree, filter="data")
    for path in (path for path, digest in manifest["files"].items() if digest is None):
        (worktree / path).unlink(missing_ok=True)


def install(worktree: Path, stage: Path = STAGE, root: Path = ROOT):
    "Copy the worktree's tracked outputs into the checkout `root`, delete what it deleted, remove the staging folder."
    changed, deleted = changed_outputs(worktree, ignored=False)
    for path in changed:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(worktree / path, root / path)
    for path in deleted:
        (root / path).unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)
    print(f"{len(changed)} files copied and {len(deleted)} deleted from {worktree}; data/regeneration/ removed")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("pack", "unpack", "install"))
    parser.add_argument("worktree", type=Path, help="the regeneration's git worktree")
    args = parser.parse_args(argv)
    if args.action == "pack":
        archive = pack(args.worktree)
        print(f"packed into {archive}" if archive else "nothing new to pack")
    else:
        (unpack if args.action == "unpack" else install)(args.worktree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
