"""Mutation testing over the exported modules: does the notebook that owns a module notice a small, realistic bug?

Each mutant replaces one exact piece of text in a module. The package, the notebooks and `data/` are copied into a
temporary folder, the text is replaced there in the module and in the notebook's exported cell it came from, and
that notebook's code cells are run in order (cells marked `#| eval: false` skipped) with the copy first on
PYTHONPATH. The repository itself is never changed. A mutant is *caught* when a check fails with an
AssertionError, *crashed* when another exception stops the notebook, *survived* when every cell passes.

    python dev/mutate.py                     # every mutant below
    python dev/mutate.py inner_llm schedule  # the mutants of some modules
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OWNER = {"engine": "02_engine", "schedule": "03_schedule", "pre_llm": "04_pre_llm", "inner_llm": "05_inner_llm",
         "cost": "06_cost"}

MUTANTS = {  # module: [(original text, mutated text), ...]; each original occurs exactly once in its module
    "inner_llm": [
        ("total_video, total_audio, temperature)", "total_video, total_audio)"),
        ("(wv + wa) / 2 * total", "(wv + wa) * total"),
        ("return max(1, round(keep_ratio * count)) if count else 0", "return max(1, int(keep_ratio * count)) if count else 0"),
        ("descending=True, stable=True).indices[:count]", "descending=False, stable=True).indices[:count]"),
        ("allowed = allowed & padding_mask", "allowed = allowed"),
        ("no_audio = (na > 0) & (ba < 1)", "no_audio = (na < 0) & (ba < 1)"),
    ],
    "engine": [
        ("kinds=_take(state.kinds, index).masked_fill(~padding_mask, Kind.TEXT)", "kinds=_take(state.kinds, index)"),
        ("padding_mask[row, new_len - len(kept):] = True", "padding_mask[row, new_len - len(kept) + 1:] = True"),
        ("if not keep[:, -1].all():", "if not keep[:, 0].all():"),
        ("position_ids=_take(state.position_ids, index, batch_dim=1, seq_dim=2)",
         "position_ids=state.position_ids[:, :, -index.shape[1]:]"),
    ],
    "schedule": [
        ("return min(1.0, self.encoder_ratio_scale * target_ratio)", "return min(1.0, 1.4 * target_ratio)"),
        ("return self.video_window_grids * grid_h * grid_w // spatial_merge_size ** 2",
         "return 2 * grid_h * grid_w // spatial_merge_size ** 2"),
        ("return round(self.audio_window_seconds * self.audio_encoder_frames_per_second)",
         "return round(self.audio_window_seconds * self.audio_tokens_per_second)"),
        ("return round(self.audio_window_seconds * self.audio_tokens_per_second)",
         "return int(self.audio_window_seconds * self.audio_tokens_per_second)"),
    ],
    "pre_llm": [
        ("return min(window_len, max(1, round(ratio * window_len)))", "return min(window_len, max(1, int(ratio * window_len)))"),
        ("window_budget(total - full_len, ratio))", "window_budget(window_tokens, ratio))"),
        ("offsets = torch.arange(start, stop, device=features.device)[:, None] * window_tokens",
         "offsets = torch.arange(start, stop, device=features.device)[:, None] * budget"),
        ("if num_full and budget >= window_tokens:", "if num_full and budget > window_tokens:"),
    ],
    "cost": [
        ("+ 2 * seq_len ** 2 * attn_width", "+ 2 * seq_len * attn_width"),
        ("length = cuts.get(num_layers, length)", "length = length"),
        ("return config.num_experts_per_tok * config.moe_intermediate_size + shared",
         "return config.num_experts_per_tok * config.moe_intermediate_size"),
    ],
}


def _exported_cells(nb: dict):
    "The code cells of a notebook that export to its module."
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).lstrip().startswith("#| export")]


RUNNER = """
import json, sys
nb = json.load(open(sys.argv[1]))
for cell in nb["cells"]:
    source = "".join(cell["source"])
    if cell["cell_type"] != "code" or "#| eval: false" in source or source.startswith("#| default_exp"):
        continue
    try:
        exec(compile(source, cell.get("id", "cell"), "exec"), globals())
    except AssertionError as error:
        print("caught", cell.get("id"), str(error).splitlines()[-1:] if str(error) else "")
        sys.exit(1)
    except BaseException as error:
        print("crashed", cell.get("id"), type(error).__name__, str(error)[:200])
        sys.exit(2)
print("survived")
"""


def run_mutant(module: str, original: str, mutated: str, timeout: int = 900) -> tuple[str, str]:
    "Apply one mutant in a temporary copy and run the owning notebook: (verdict, detail)."
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ("seats_analysis", "nbs", "data"):
            shutil.copytree(REPO / name, tmp / name)
        shutil.copy(REPO / "settings.ini", tmp / "settings.ini")
        source = tmp / "seats_analysis" / f"{module}.py"
        text = source.read_text()
        if text.count(original) != 1:
            return "skipped", f"{text.count(original)} matches in {module}.py"
        source.write_text(text.replace(original, mutated))
        notebook = tmp / "nbs" / f"{OWNER[module]}.ipynb"
        nb = json.loads(notebook.read_text())
        cells = [c for c in _exported_cells(nb) if original in "".join(c["source"])]
        if len(cells) != 1:
            return "skipped", f"{len(cells)} exported cells of {notebook.name} hold the text"
        cells[0]["source"] = "".join(cells[0]["source"]).replace(original, mutated).splitlines(keepends=True)
        notebook.write_text(json.dumps(nb))
        (tmp / "runner.py").write_text(RUNNER)
        try:
            done = subprocess.run([sys.executable, str(tmp / "runner.py"), str(notebook)], cwd=tmp / "nbs",
                                  env={**os.environ, "PYTHONPATH": str(tmp), "OMP_NUM_THREADS": "1"},
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", f"over {timeout} s"
        lines = done.stdout.strip().splitlines() or done.stderr.strip().splitlines()[-1:] or [""]
        return lines[-1].split()[0], lines[-1]


def main(modules: list[str]):
    tally = {}
    for module in modules:
        for original, mutated in MUTANTS[module]:
            start = time.time()
            verdict, detail = run_mutant(module, original, mutated)
            tally.setdefault(module, {}).setdefault(verdict, 0)
            tally[module][verdict] += 1
            print(f"{module:10s} {verdict:9s} {time.time() - start:6.0f} s  {original!r} -> {mutated!r}  [{detail}]",
                  flush=True)
    print("\n| module | " + " | ".join(("caught", "crashed", "survived", "other")) + " |")
    for module, counts in tally.items():
        other = sum(v for k, v in counts.items() if k not in ("caught", "crashed", "survived"))
        print(f"| {module} | {counts.get('caught', 0)} | {counts.get('crashed', 0)} | {counts.get('survived', 0)} | {other} |")


if __name__ == "__main__":
    main(sys.argv[1:] or [m for m in MUTANTS if MUTANTS[m]])
