"""Mutation testing over the exported modules: do the checks that cover a module notice a small, realistic bug?

Each mutant replaces one exact piece of text in a module. The package, the notebooks, the tests and `data/` are
copied into a temporary folder, the text is replaced there in the module and in the exported cell of the notebook
the module comes from, and the checks of the mutant are run in order: notebooks (their code cells in order, cells
marked `#| eval: false` skipped) and `tests/*.py` files (with pytest), the copy first on PYTHONPATH. The repository
itself is never changed. A mutant is *caught* when a check fails with an AssertionError, *crashed* when another
exception stops every check that failed, *survived* when every check passes. A mutant marked equivalent (it cannot
change a result; the reason is given) is listed, not run; one whose original text is no longer in its module is
*stale* (the code changed: update the mutant).

    python dev/mutate.py                     # every mutant below
    python dev/mutate.py inner_llm schedule  # the mutants of some modules
    python dev/mutate.py blocks:3 probe:0    # single mutants, by index in their module's list
    python dev/mutate.py --list              # the mutants, with their index, without running them
    python dev/mutate.py --baseline blocks   # the checks of some modules on the unmutated code (must all pass)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
CHECKS = {  # module: the notebooks and test files run against each of its mutants, in order
    "engine": ["02_engine"], "schedule": ["04_schedule"], "pre_llm": ["06_pre_llm"], "inner_llm": ["07_inner_llm"],
    "cost": ["08_cost"], "baselines": ["10_baselines"], "probe": ["03_probe"], "blocks": ["05_blocks"],
    "prompts": ["14b_prompts"], "scoring": ["14c_scoring"], "parsers": ["14_parsers", "14c_scoring"],
    "benchmarks": ["14b_prompts", "14c_scoring"],
}


class Mutant(NamedTuple):
    original: str  # occurs exactly once in the module
    mutated: str
    equivalent: str | None = None  # why the mutant cannot change a result (then it is not run)
    checks: tuple[str, ...] | None = None  # the checks to run instead of the module's


def M(original: str, mutated: str, equivalent: str | None = None, checks=None) -> Mutant:
    return Mutant(original, mutated, equivalent, tuple(checks) if checks else None)


MUTANTS = {  # module: [M(original text, mutated text[, equivalent=reason][, checks=...]), ...]
    "inner_llm": [
        M("*totals, temperature)", "*totals, 0.1)"),  # the default 0.1 instead of the argument
        M("(wv + wa) / 2 * total", "(wv + wa) * total"),
        M("return max(1, round(keep_ratio * count)) if count else 0", "return max(1, int(keep_ratio * count)) if count else 0"),
        M("order = torch.sort(scores, descending=True, stable=True).indices  # best first",
          "order = torch.sort(scores, descending=False, stable=True).indices  # best first"),
        M("allowed = allowed & padding_mask", "allowed = allowed"),
        M("no_audio = (na > 0) & (ba == 0)", "no_audio = (na < 0) & (ba == 0)"),
        M("allowed = torch.arange(seq_len, device=hidden_states.device)[None] <= query_index[:, None]",
          "allowed = torch.arange(seq_len, device=hidden_states.device)[None] < query_index[:, None]"),
        M("return logits.softmax(dim=-1).mean(dim=(1, 2))", "return logits.softmax(dim=-1).mean(dim=1)[:, 0]"),
        M("bv = video_share.round().long().maximum(budgets - na).minimum(nv)", "bv = video_share.round().long().minimum(nv)"),
        M("skipped = count - missing if cutting else 0", "skipped = 0"),
        M("q = _rotate(q, at_query(cos), at_query(sin))", "q = _rotate(q, at_query(sin), at_query(cos))"),
        M("(share_v / (share_v + share_a + 1e-12))", "(share_a / (share_v + share_a + 1e-12))"),
        M("means = sums / sizes.float().clamp(min=1)",  # a window's mean as if padded to its modality's longest run
          "means = sums / sizes.view(2, num_windows).amax(1, keepdim=True).expand(2, num_windows).flatten().float()"),
    ],
    "engine": [
        M("kinds=_take(state.kinds, index).masked_fill(~padding_mask, Kind.TEXT)", "kinds=_take(state.kinds, index)"),
        M("padding_mask[row, new_len - len(kept):] = True", "padding_mask[row, new_len - len(kept) + 1:] = True"),
        M("if not keep[:, -1].all():", "if not keep[:, 0].all():"),
        M("position_ids=_take(state.position_ids, index, batch_dim=1, seq_dim=2)",
          "position_ids=state.position_ids[:, :, -index.shape[1]:]"),
        M("counts[:, event.k:] = (kept & wanted).sum(1, keepdim=True)", "counts[:, event.k + 1:] = (kept & wanted).sum(1, keepdim=True)"),
        M("return self.layer_counts(kind).double().mean(1) / total", "return self.layer_counts(kind).double().sum(1) / total"),
        M("if k <= layer_idx or past > 0:", "if k < layer_idx or past > 0:"),
        M("index[row] = torch.cat([kept[:1].repeat(new_len - len(kept)), kept])",
          "index[row] = torch.cat([kept[-1:].repeat(new_len - len(kept)), kept])"),
    ],
    "schedule": [
        M("return min(1.0, self.encoder_ratio_scale * target_ratio)", "return min(1.0, 1.4 * target_ratio)"),
        M("return self.video_window_grids * grid_h * grid_w // spatial_merge_size ** 2",
          "return 2 * grid_h * grid_w // spatial_merge_size ** 2"),
        M("return round(self.audio_window_seconds * self.audio_encoder_frames_per_second)",
          "return round(self.audio_window_seconds * self.audio_tokens_per_second)"),
        M("return round(self.audio_window_seconds * self.audio_tokens_per_second)",
          "return int(self.audio_window_seconds * self.audio_tokens_per_second)"),
        M("segments = [b - a for a, b in zip([0, *drops], [*drops, last])]",
          "segments = [b - a for a, b in zip([1, *drops], [*drops, last])]"),
        M("cumulative = [sum(weights[:k]) for k in range(len(drops) + 1)]",
          "cumulative = [sum(weights[:k + 1]) for k in range(len(drops) + 1)]"),
        M("low, high = (mid, high) if layer_sum(mid) > target else (low, mid)",
          "low, high = (mid, high) if layer_sum(mid) < target else (low, mid)"),
        M("curve.append(level if layer <= last else 0.0)", "curve.append(level if layer < last else 0.0)"),
    ],
    "pre_llm": [
        M("return min(window_len, max(1, round(ratio * window_len)))", "return min(window_len, max(1, int(ratio * window_len)))"),
        M("window_budget(last_len, ratio)", "window_budget(window_tokens, ratio)"),
        M("offsets = torch.arange(start, stop, device=features.device)[:, None] * window_tokens",
          "offsets = torch.arange(start, stop, device=features.device)[:, None] * budget"),
        M("select_full, select_last = budget < window_tokens,", "select_full, select_last = budget <= window_tokens,"),
        M("(own > second).nonzero(as_tuple=True)", "(own < second).nonzero(as_tuple=True)"),
        M("values[:, 1]  # (C, N) -> (C,)", "values[:, 0]  # (C, N) -> (C,)"),
        M("    diagonal.copy_(own)\n", "\n"),
        M("torch.sub(dist.new_ones(()), dist, out=dist)", "torch.sub(dist, dist.new_ones(()), out=dist)"),
        M("torch.minimum(m, dist[rows, new], out=m)", "torch.maximum(m, dist[rows, new], out=m)"),
        M("dist.mul_((attention.to(dtype) * ATTENTION_SCALE)[:, None, :])",
          "dist.mul_((attention.to(dtype) * ATTENTION_SCALE)[:, :, None])"),
        M("keep[full_len + picked[-1, :last_budget]] = True", "keep[picked[-1, :last_budget]] = True"),
        M('padded[:, n:, :n] = float("inf")', 'padded[:, n:, :n] = float("-inf")'),
        M("dist.diagonal(dim1=1, dim2=2).fill_(PICKED)", "dist.diagonal(dim1=1, dim2=2).fill_(0.0)"),
    ],
    "cost": [
        M("+ 2 * seq_len ** 2 * attn_width", "+ 2 * seq_len * attn_width"),
        M("length = cuts.get(num_layers, length)", "length = length"),
        M("return config.num_experts_per_tok * config.moe_intermediate_size + shared",
          "return config.num_experts_per_tok * config.moe_intermediate_size"),
        M("attn_width, kv_width = num_heads * head_dim, num_kv_heads * head_dim",
          "attn_width, kv_width = num_heads * head_dim, num_heads * head_dim"),
        M("+ 3 * seq_len * hidden_size * intermediate_size)", "+ 2 * seq_len * hidden_size * intermediate_size)"),
        M("length = cuts.get(layer_idx, length)", "length = cuts.get(layer_idx + 1, length)"),
    ],
    "baselines": [
        M("visionzip_counts(chunk.shape[1], ratio, self.contextual_ratio)",  # the option ignored
          "visionzip_counts(chunk.shape[1], ratio)"),
        M("budget = int(video_ratio * n_video + audio_ratio * n_audio)", "budget = round(video_ratio * n_video + audio_ratio * n_audio)"),
        M("video, audio = (budget - n_audio) / n_video, 1.0\n    if video < min_video_ratio:",
          "video, audio = budget / n_video, 1.0\n    if video < min_video_ratio:"),
        M("video = max(0.0, min(min_video_ratio, budget / n_video))", "video = max(0.0, min_video_ratio)"),
        M("return min(max(int(ratio * count), 1), count) if ratio > 0 and count else 0",
          "return min(max(round(ratio * count), 1), count) if ratio > 0 and count else 0"),
        M("dominant_ratio = max(ratio - contextual_ratio, 0)", "dominant_ratio = max(ratio, 0)"),
        M("contextual = min(max(round(contextual_ratio * window_len), 1), window_len - dominant)",
          "contextual = min(max(int(contextual_ratio * window_len), 1), window_len - dominant)"),
        M("anchor_slots = slots[::max(1, rest.shape[1] // num_contextual)][:num_contextual]",
          "anchor_slots = slots[:num_contextual]"),
        M("merged[windows, anchors] = (features[windows, anchors].float() + mean)", "merged[windows, anchors] = (mean)"),
        M("ratio = (target * num_layers - after_layers) / (num_layers - after_layers)",
          "ratio = (target * num_layers - after_layers) / num_layers"),
        M("state.layers[self.after_layers - 1]", "state.layers[self.after_layers]"),
        M("return grid_h * grid_w // self.spatial_merge_size ** 2  # one temporal grid",
          "return grid_h * grid_w // self.spatial_merge_size  # one temporal grid"),
        M("return {self.after_layers: self.cut}", "return {self.after_layers - 1: self.cut}"),
        M("picked = windivprune(state.hidden_states[row, positions], None, modality_total(ratio, len(positions)))",
          "picked = windivprune(state.hidden_states[row, positions], None, truncated_count(ratio, len(positions)))"),
        M("floor = after_layers / num_layers", "floor = (after_layers - 1) / num_layers"),
    ],
    "probe": [
        M('F.kl_div(logp, ref_logp, reduction="sum", log_target=True)', 'F.kl_div(ref_logp, logp, reduction="sum", log_target=True)'),
        M("float(logp[ref_logp.argmax()])", "float(logp[logp.argmax()])"),
        M("float(int(logp[list(options)].argmax()) == answer)", "float(int(ref_logp[list(options)].argmax()) == answer)"),
        M("return state.padding_mask & ~removed", "return ~removed",
          equivalent="the probe runs batches of one whose main run is never cut: every padding_mask it sees is all True"),
        M("removal_logits(thinker, inputs, removals, [l - 1 for l in layers], method, use_audio_in_video)",
          "removal_logits(thinker, inputs, removals, [l for l in layers], method, use_audio_in_video)"),
        M("use_audio_in_video = (present[Kind.VIDEO] and present[Kind.AUDIO] if",
          "use_audio_in_video = (present[Kind.VIDEO] or present[Kind.AUDIO] if"),
        M("for k in REMOVED_KINDS[c] if not present[k])", "for k in REMOVED_KINDS[c] if present[k])"),
        M("if i % world == rank]", "if i % world == 0]"),
        M('"sample", newest_success,', '"sample", lambda new, old: True,'),  # a failed retry hides the success
        M('key=lambda r: (r["index"], r["sample"]))', 'key=lambda r: r["sample"])'),
        M('count[0] += (args[0] if args else kwargs["hidden_states"]).shape[1]',
          'count[0] += (args[0] if args else kwargs["hidden_states"]).shape[0]'),
        M('check_int("layer", layer, 1, num_layers, "1-based decoder layers")',
          'check_int("layer", layer, 1, num_layers - 1, "1-based decoder layers")'),
    ],
    "blocks": [
        M("within = s >= 1 - late_tolerance - ROUNDING", "within = s >= 1 - late_tolerance"),
        M("late = int(np.argmax(from_here_on)) + 1 if", "late = int(np.argmax(from_here_on)) if"),
        M("from_here_on = np.logical_and.accumulate(within[::-1])[::-1]", "from_here_on = within"),
        M("recovered = s >= middle_fraction - ROUNDING", "recovered = s > middle_fraction"),
        M("increasing=higher_is_better).x", "increasing=True).x"),
        M("worst = float(fitted.min() if higher_is_better else fitted.max())", "worst = float(fitted.min())"),
        M("return sign * (fitted - worst) / damage, worst", "return (fitted - worst) / damage, worst"),
        M("return worst + fraction * (reference - worst)", "return fraction * (reference - worst)"),
        M("BLOCK_NAMES[(layer >= self.middle_block_layer)", "BLOCK_NAMES[(layer > self.middle_block_layer)"),
        M("[(1 - confidence) / 2, (1 + confidence) / 2]", "[1 - confidence, confidence]"),
        M("np.where(layer < middle_block_layer, shallow,", "np.where(layer <= middle_block_layer, shallow,"),
        M('keep &= ds["error"].astype(str) == ""', 'keep &= True'),
        M("return [middle_block_layer + k * n // (num_drops + 1) for k in range(num_drops)]",
          "return [middle_block_layer + k * n // num_drops for k in range(num_drops)]"),
        M("late_threshold=_threshold(1 - late_tolerance,", "late_threshold=_threshold(late_tolerance,"),
    ],
    "prompts": [
        M('return f"{QWEN_SYSTEM_PROMPT} {ANSWER_SENTENCE}" if _spec(benchmark).system_prompt else ""',
          'return f"{QWEN_SYSTEM_PROMPT} {ANSWER_SENTENCE}" if not _spec(benchmark).system_prompt else ""'),
        M('choices="\\n".join(record.options))', 'choices=" ".join(record.options))'),
    ],
    "scoring": [
        M('"overall": 100.0 * sum(counted) / len(counted)', '"overall": 100.0 * sum(counted) / len(results)'),
        M('groups[value].setdefault(r["id"] if dedup else k, hit)', 'groups[value][r["id"] if dedup else k] = hit'),
    ],
    "parsers": [
        M("return found[last_bracket.index(max(last_bracket))]", "return found[last_bracket.index(min(last_bracket))]"),
        M("if len(text.split()) > 5:", "if len(text.split()) >= 5:"),
        M("text = text[:start] + text[end + len(end_tag):]", "text = text[:start] + text[end:]"),
        M("text = text.rsplit(end_tag, 1)[-1]", "text = text.split(end_tag, 1)[-1]"),
        M('found = re.search("[ABCD]", text)', 'found = re.search("[A-Z]", text)'),
        M('at = text.rfind(fmt.replace("X", c))', 'at = text.find(fmt.replace("X", c))'),
        M("if core.startswith(c) and (len(core) == 1 or not core[1].isalpha()):",
          "if core.startswith(c) and (len(core) == 1 or core[1].isalpha()):"),
        M('return found.pop() if len(found) == 1 else ""', 'return found.pop() if found else ""'),
    ],
    "benchmarks": [
        M('parse_strict(response, letters or "ABCD")', 'parse_strict(response)'),
        M('overall_field="video_category", breakdown=("video_category", "Type", "video_duration")',
          'overall_field=None, breakdown=("video_category", "Type", "video_duration")'),
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


def _source_notebook(text: str) -> str:
    "The notebook a module is exported from, read from its header."
    return re.search(r"File to edit: \.\./nbs/(\S+)\.ipynb", text)[1]


def _run_check(tmp: Path, check: str, timeout: int) -> tuple[str, str]:
    "Run one notebook (by name) or tests file (by path) in the copy: (verdict, detail)."
    env = {**os.environ, "PYTHONPATH": str(tmp), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if check.startswith("tests/"):
        command, cwd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", check], tmp
    else:
        command, cwd = [sys.executable, str(tmp / "runner.py"), str(tmp / "nbs" / f"{check}.ipynb")], tmp / "nbs"
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", f"{check}: over {timeout} s"
    if check.startswith("tests/"):
        if done.returncode == 0:
            return "survived", check
        failed = [l for l in done.stdout.splitlines() if l.startswith(("E ", "FAILED", "ERROR"))]
        verdict = "caught" if any("AssertionError" in l or l.startswith("E       assert") for l in failed) else "crashed"
        return verdict, f"{check}: {failed[-1][:200] if failed else done.stdout[-200:]}"
    lines = done.stdout.strip().splitlines() or done.stderr.strip().splitlines()[-1:] or [""]
    verdict = lines[-1].split()[0] if lines[-1] else "crashed"
    return (verdict if verdict in ("caught", "crashed", "survived") else "crashed"), f"{check}: {lines[-1]}"


def run_mutant(module: str, mutant: Mutant, timeout: int = 900) -> tuple[str, str]:
    "Apply one mutant in a temporary copy and run its checks until one catches it: (verdict, detail)."
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ("seats_analysis", "nbs", "data", "tests", "dev"):
            shutil.copytree(REPO / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("settings.ini", "pyproject.toml", "README.md"):
            shutil.copy(REPO / name, tmp / name)
        (tmp / "runner.py").write_text(RUNNER)
        if mutant is not None:
            source = tmp / "seats_analysis" / f"{module}.py"
            text = source.read_text()
            if text.count(mutant.original) == 0:
                return "stale", f"the original text is no longer in {module}.py"
            if text.count(mutant.original) > 1:
                return "ambiguous", f"{text.count(mutant.original)} matches in {module}.py"
            source.write_text(text.replace(mutant.original, mutant.mutated))
            notebook = tmp / "nbs" / f"{_source_notebook(text)}.ipynb"
            nb = json.loads(notebook.read_text())
            cells = [c for c in _exported_cells(nb) if mutant.original in "".join(c["source"])]
            if len(cells) != 1:
                return "stale", f"{len(cells)} exported cells of {notebook.name} hold the text"
            cells[0]["source"] = "".join(cells[0]["source"]).replace(mutant.original, mutant.mutated).splitlines(keepends=True)
            notebook.write_text(json.dumps(nb))
        checks = (mutant.checks if mutant is not None and mutant.checks else None) or CHECKS[module]
        results = []
        for check in checks:
            verdict, detail = _run_check(tmp, check, timeout)
            if verdict == "caught":
                return verdict, detail
            results.append((verdict, detail))
        failed = [r for r in results if r[0] != "survived"]
        return failed[0] if failed else ("survived", ", ".join(checks))


VERDICTS = ("caught", "crashed", "survived", "equivalent", "stale")


def _selected(args: list[str]) -> list[tuple[str, int]]:
    "(module, index) of the mutants named on the command line (all when none)."
    picked = []
    for arg in args or [m for m in MUTANTS if MUTANTS[m]]:
        module, _, index = arg.partition(":")
        if module not in MUTANTS:
            raise SystemExit(f"unknown module {module!r}; one of {sorted(MUTANTS)}")
        picked += [(module, int(index))] if index else [(module, i) for i in range(len(MUTANTS[module]))]
    return picked


def main(args: list[str]):
    if "--list" in args:
        for module, i in _selected([a for a in args if a != "--list"]):
            mutant = MUTANTS[module][i]
            print(f"{module}:{i:<3d} {mutant.original!r} -> {mutant.mutated!r}"
                  + (f"  [equivalent: {mutant.equivalent}]" if mutant.equivalent else ""))
        return
    if "--baseline" in args:
        for module in [a for a in args if a != "--baseline"] or list(CHECKS):
            start = time.time()
            verdict, detail = run_mutant(module, None)
            print(f"{module:10s} {'passes' if verdict == 'survived' else 'FAILS ' + verdict:9s} "
                  f"{time.time() - start:6.0f} s  [{detail}]", flush=True)
        return
    tally = {}
    for module, i in _selected(args):
        mutant, start = MUTANTS[module][i], time.time()
        if mutant.equivalent:
            verdict, detail = "equivalent", mutant.equivalent
        else:
            verdict, detail = run_mutant(module, mutant)
        counts = tally.setdefault(module, dict.fromkeys(VERDICTS + ("other",), 0))
        counts[verdict if verdict in VERDICTS else "other"] += 1
        print(f"{module}:{i:<3d} {verdict:10s} {time.time() - start:5.0f} s  {mutant.original!r} -> {mutant.mutated!r}"
              f"  [{detail}]", flush=True)
    print("\n| module | " + " | ".join(VERDICTS + ("other",)) + " |")
    print("|---" * (len(VERDICTS) + 2) + "|")
    for module, counts in tally.items():
        print(f"| {module} | " + " | ".join(str(counts[v]) for v in VERDICTS + ("other",)) + " |")
    total = {v: sum(c[v] for c in tally.values()) for v in VERDICTS + ("other",)}
    print("| total | " + " | ".join(str(total[v]) for v in VERDICTS + ("other",)) + " |")
    run = total["caught"] + total["crashed"] + total["survived"]
    if run:
        print(f"\ncaught by an assertion: {total['caught']} of {run} non-equivalent mutants ({total['caught'] / run:.0%})")


if __name__ == "__main__":
    main(sys.argv[1:])
