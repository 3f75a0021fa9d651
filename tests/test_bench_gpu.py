"""The GPU tables' code path (`bench.gpu_tables`, what `python -m seats_analysis.bench --device cuda` runs) on the CPU:
every method of `BENCH_METHODS` at the tiny width on a 2-s clip at R10 with one repeat, with sdpa and flash attention
(the pure-torch stand-in where flash-attn is missing): the rows, the R10 summary, the code revision, and the sync debug
mode set around SEATS' selection, through a stand-in for CUDA's."""
import fnmatch
import subprocess
from itertools import product

import pandas as pd
import pytest
import torch

from seats_analysis import bench, storage
from seats_analysis.catalog import RATIO_PAIRS
from seats_analysis.pre_llm import CAN_COMPILE
from seats_analysis.schedule import Schedule
from seats_analysis.seats import SeatsSelectors

ATTNS = ["sdpa", "flash_attention_2"]
R10_COLUMNS = ["method", "attn", "compiled", "speedup", "paper_speedup", "flops_reduction", "paper_flops_reduction",
               "same_kept", "revision"]


class RecordedSyncDebug:
    "A stand-in for CUDA's sync debug mode: what it is, and every value it was set to."

    def __init__(self):
        self.mode, self.log = "default", []

    def get(self):
        return self.mode

    def set(self, mode):
        self.mode = mode
        self.log.append(mode)


def repo_revision() -> str:
    """The package repository's revision worked out here from git's log, independently of the bench: the newest commit
    that changed a file other than the runs' outputs, `-dirty` where such a file changed since."""
    git = lambda *args: subprocess.run(["git", "-C", str(storage.PACKAGE_ROOT), *args], capture_output=True,
                                       text=True, check=True).stdout
    is_code = lambda path: not (path.startswith(("data/", "figures/"))
                                or fnmatch.fnmatch(path, "seats_analysis/schedules/organism*.json"))
    newest = next(commit for commit in git("log", "--format=%x00%h", "--name-only").split("\0")[1:]
                  if any(is_code(path) for path in commit.split()[1:]))
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return newest.split()[0] + ("-dirty" if any(map(is_code, changed)) else "")


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tables") / "prefill_gpu"
    sync = RecordedSyncDebug()
    tables = bench.gpu_tables(out, device="cpu", size="tiny", dtype="float32", attns=ATTNS, settings=["R10"],
                              seconds=2, repeats=1, scaling_seconds=2, progress=False, keep_memory=False,
                              sync=bench.SyncDebug(sync.get, sync.set))
    return out, tables, sync


def test_one_row_per_method_attention_and_compiled_mode(gpu_run):
    out, tables, _ = gpu_run
    table = tables["prefill"]
    modes = ["eager", "default"] if CAN_COMPILE else ["eager"]  # reduce-overhead replays CUDA graphs: a GPU only
    expected = [("full", attn, "eager", "full") for attn in ATTNS] + [
        (method, attn, mode, "R10") for method, attn in product(bench.BENCH_METHODS, ATTNS)
        for mode in (modes if method == "seats" else ["eager"])]
    assert sorted(map(tuple, table[["method", "attn", "compiled", "setting"]].values.tolist())) == sorted(expected)
    for attn in ATTNS:  # each attention measured against its own unpruned prefill
        assert table[(table.attn == attn) & (table.method == "full")].speedup.tolist() == [1.0]
    written = pd.read_csv(out.with_suffix(".csv"))
    assert written[["method", "attn", "compiled"]].values.tolist() == table[["method", "attn", "compiled"]].values.tolist()


def test_every_pruned_row_has_fewer_flops_and_compiled_seats_keeps_the_same_positions(gpu_run):
    table = gpu_run[1]["prefill"]
    pruned = table[table.method != "full"]
    assert (pruned.flops_reduction > 1).all(), pruned[["method", "compiled", "flops_reduction"]]
    assert (table[table.method == "full"].flops_reduction == 1).all()
    compiled = table[table.compiled != "eager"]
    assert set(compiled.method) <= {"seats"} and compiled.same_kept.tolist() == [True] * len(compiled)
    assert compiled.selection_ops.isna().all()  # not counted: counting cannot run compiled code
    assert table[table.compiled == "eager"].same_kept.isna().all()
    seats = table[table.method == "seats"].set_index("compiled")
    assert seats.flops_reduction.nunique() == 1  # the same kept tokens, the same analytic FLOPs


def test_r10_summary_holds_each_rows_speedup_beside_its_flops_and_the_papers_for_seats(gpu_run):
    out, tables, _ = gpu_run
    table, summary = tables["prefill"], tables["r10"]
    assert summary.columns.tolist() == R10_COLUMNS
    assert pd.read_csv(out.with_name(out.name + "_r10.csv")).columns.tolist() == R10_COLUMNS
    r10 = table[table.setting == "R10"].reset_index(drop=True)
    assert summary[["method", "attn", "compiled"]].equals(r10[["method", "attn", "compiled"]])
    assert summary.speedup.tolist() == r10.speedup.tolist()
    assert summary.flops_reduction.tolist() == r10.flops_reduction.tolist()
    seats = summary.method == "seats"
    assert (summary.paper_speedup[seats] == 4.8).all() and (summary.paper_flops_reduction[seats] == 9.3).all()
    assert summary.paper_speedup[~seats].isna().all() and summary.paper_flops_reduction[~seats].isna().all()


def test_every_table_records_the_code_revision(gpu_run):
    out, tables, _ = gpu_run
    revision = repo_revision()
    for name in ("prefill", "r10", "steps", "scaling"):
        assert set(tables[name].revision) == {revision}, name
    for suffix in ("", "_r10", "_steps"):
        assert f"code revision {revision}" in out.with_name(out.name + suffix + ".md").read_text(), suffix


def test_sync_debug_mode_is_error_during_each_step_of_seats_selection_only(gpu_run):
    table, sync = gpu_run[1]["prefill"], gpu_run[2]
    seats_rows = int((table.method == "seats").sum())
    steps = 2 + len(SeatsSelectors(Schedule.load("qwen2_5_omni_7b"), *RATIO_PAIRS["R10"]).selectors())  # statistics, selectors
    assert sync.log == ["error", "default"] * (seats_rows * int(table.repeats[0]) * steps)
    assert sync.mode == "default"


def test_gpu_tables_refuse_before_any_work(tmp_path):
    for kwargs, message in ((dict(attns=["sdpa", "sdpa"]), "attns=['sdpa', 'sdpa']: give a list"),
                            (dict(attns=["xformers"]), "attns=['xformers']"),
                            (dict(compiled=["reduce-overhead"]), "compiled=['reduce-overhead']: give distinct modes from default on cpu"),
                            (dict(settings=["R99"]), "settings=['R99']"),
                            (dict(size="13b"), "size='13b' is not one of")):
        with pytest.raises(ValueError, match=None) as refused:
            bench.gpu_tables(tmp_path / "tables" / "prefill", device="cpu", **{"size": "tiny", **kwargs})
        assert message in str(refused.value), (kwargs, refused.value)
    assert not (tmp_path / "tables").exists()


def test_gpu_variants_say_what_they_leave_out(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(bench, "flash_attention_installed", lambda: False)
    attns, compiled, notes = bench.gpu_variants(cuda)
    assert attns == ["sdpa"] and notes[0] == "flash_attention_2: no rows, flash_attn is not installed here (pip install flash-attn)"
    assert len(notes) == 1 + (not CAN_COMPILE)  # and, on a torch that does not compile the selection, that too
    monkeypatch.setattr(bench, "flash_attention_installed", lambda: True)
    assert bench.gpu_variants(cuda)[0] == ["sdpa", "flash_attention_2"]
    assert bench.gpu_variants(cuda, attns=["eager"])[0] == ["eager"]
    if CAN_COMPILE:
        assert bench.gpu_variants(cuda)[1:] == (["default", "reduce-overhead"], [])
        assert bench.gpu_variants(cpu)[1] == ["default"]  # CUDA graphs on a GPU only
    assert bench.gpu_variants(cuda, seats=False)[1:] == ([], [])  # no SEATS, no compiled rows
    monkeypatch.setattr(bench, "CAN_COMPILE", False)
    _, compiled, notes = bench.gpu_variants(cuda)
    assert compiled == [] and len(notes) == 1 and notes[0].startswith("compiled SEATS: no rows, the compiled selection needs torch >=")


def test_the_command_writes_the_gpu_tables_on_a_cuda_device(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # a GPU, as far as the argument check can tell
    calls = []
    monkeypatch.setattr(bench, "gpu_tables", lambda *args, **kwargs: calls.append(("gpu", args, kwargs)))
    monkeypatch.setattr(bench, "run_benchmark", lambda *args, **kwargs: calls.append(("cpu", args, kwargs)))
    out = str(tmp_path / "prefill_h100")
    bench.bench_main(["--device", "cuda", "--size", "7b", "--dtype", "bfloat16", "--out", out])
    bench.bench_main(["--device", "cuda", "--attn", "flash_attention_2", "--settings", "R10", "--out", out])
    bench.bench_main(["--out", out])
    bench.bench_main(["--device", "cuda", "--compiled", "none", "--out", out])
    bench.bench_main(["--device", "cuda", "--compiled", "reduce-overhead", "--out", out])
    (gpu, args, kwargs), (gpu_flash, flash_args, _), (cpu, cpu_args, cpu_kwargs), *compiled = calls
    assert (gpu, gpu_flash, cpu) == ("gpu", "gpu", "cpu")
    assert args[:5] == (out, "cuda", "7b", "bfloat16", None)  # attentions: sdpa, and flash where flash-attn imports
    assert flash_args[4] == ["flash_attention_2"] and flash_args[6] == ["R10"]
    assert kwargs["compiled"] is None  # every mode the device runs
    assert [call[2]["compiled"] for call in compiled] == [[], ["reduce-overhead"]]
    assert cpu_args[:4] == (out, "cpu", "cpu", "float32") and cpu_kwargs["attn"] == "sdpa"


@pytest.mark.parametrize("argv, message", [
    (["--compiled", "default"], "--compiled: an option of the GPU tables"),  # the CPU run
    (["--device", "cuda", "--compiled", "fast"], "'fast': give distinct names from default, reduce-overhead"),
    (["--device", "cuda", "--compiled", "default,default"], "give distinct names")])
def test_the_command_refuses_compiled_modes_it_cannot_run(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(bench, "gpu_tables", lambda *args, **kwargs: pytest.fail("ran despite a bad --compiled"))
    monkeypatch.setattr(bench, "run_benchmark", lambda *args, **kwargs: pytest.fail("ran despite a bad --compiled"))
    with pytest.raises(SystemExit) as exit_:
        bench.bench_main([*argv, "--out", str(tmp_path / "t")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_same_kept_compares_a_compiled_row_with_the_eager_one_at_its_setting():
    sample = dict(video_retention=0.1, audio_retention=0.3, reachable=True, flops=1e9, full_flops=4e9, seconds=1.0,
                  encoder_seconds=0.1, selection_seconds=0.01, llm_seconds=0.8)
    counted = dict(selection_ops=5, host_syncs=0, check_syncs=1)
    first = {("seats", "eager", "R10"): dict(counted, kept=[[0, 2, 5]]), ("seats", "eager", "R35"): dict(counted, kept=[[0, 1, 2]]),
             ("seats", "default", "R10"): dict(kept=[[0, 2, 5]]), ("seats", "default", "R35"): dict(kept=[[0, 1, 3]])}
    row = lambda mode, setting: bench._bench_row("seats", mode, setting, 0.06, 0.35, first, [sample])
    assert (row("default", "R10")["same_kept"], row("default", "R35")["same_kept"]) == (True, False)
    assert row("eager", "R10")["same_kept"] is None and row("eager", "R10")["selection_ops"] == 5
    assert row("default", "R10")["selection_ops"] is None  # a compiled run is not counted
