"""Record the letters the authors' release reads from a table of replies (a development tool, not run in CI).

Usage: python dev/release_parsers.py /path/to/SEATS-checkout [out.json]

The release's parsing functions are loaded at run time from the checkout (lmms-eval's `strip_reasoning_tags`,
`extract_mcq_answer` and each task's own parser) and applied to the replies below, in the order lmms-eval
applies them: reasoning tags stripped with its default tags, then the task's `process_results` parser. Nothing
of the release is copied here; the output is the replies and the letters, written to
`data/fixtures/release/parsers.json` by default.
"""
import ast
import importlib.util
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

COMMIT = "c553732cc472321f0c575ecc6369a32c1c1fd2df"  # the release snapshot the committed fixtures come from
# lmms-eval's default for --reasoning_tags
DEFAULT_TAGS = [["<think>", "</think>"], ["<analysis>", "</analysis>"]]

REPLIES = [
    "C", "B", "b", "(d)", "d.", "Answer: C", "Answer: B. A red car drives past.",
    "The answer is C. A red car drives past.", "The answer is (B)", "The answer is B because A is wrong",
    "the answer is c", "The answer is Dunno", "I think (B) is right, not C.", "A man is cooking.",
    "B. A man is cooking.", "Dunno", "Cats and Dogs", "Dogs are barking", "no idea", "none of them",
    "the video shows a cat on the sofa and nothing else", "B or C", "The answer is B or C", "B/C",
    "<think>maybe B</think> C", "<think>A is tempting, but</think>The answer is D.", "Reasoning here.</think> B",
    "</think>", "<analysis>C?</analysis>A", "<think>unfinished B", "<think>x</think><think>y</think> A",
    "答案是B", "答案为：C", "我选D", "정답은 C입니다", "옵션 B", "答えはA", "Based on the video, C",
    "I choose B", "My choice is (A)", "The best answer is: D", "Best answer: C", "The correct option is D.",
    "The best option isThe correct option is D", "Clearly the answer is B", "(A) and (C)", "A) first B) second",
    "The correct answer is: A", "E", "Fish", "  b. green", "", "   ", "**C**", "C:", "Option B is right",
    "It is not A, the answer is D", "ABCD", "The answer is E", "the man in red",
]

TASKS = {  # benchmark -> (utils.py inside lmms-eval/lmms_eval/tasks, function name)
    "worldsense": ("worldsense/utils.py", "worldsense_process_results"),
    "dailyomni": ("dailyomni/utils.py", "parse_multi_choice_response"),
    "videomme": ("videomme/utils.py", "extract_characters_regex"),
    "omnivideobench": ("omnivideobench/utils.py", "extract_characters_regex"),
    "lvomnibench": ("lvomnibench/utils.py", "extract_characters_regex"),
}


def load_module(path: Path):
    "Import a self-contained Python file of the checkout as a module."
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_function(path: Path, name: str, namespace: dict, drop_imports: bool = False):
    "Define the top-level function `name` of the Python file `path` in `namespace` and return it."
    node = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == name)
    if drop_imports:  # its imports are supplied through `namespace`
        node.body = [b for b in node.body if not isinstance(b, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]


def main(checkout: Path, out: Path):
    lmms = checkout / "lmms-eval" / "lmms_eval"
    mcq = load_module(lmms / "tasks/_task_utils/mcq_extract.py")
    strip = load_module(lmms / "api/reasoning.py").strip_reasoning_tags
    letters = {}
    for benchmark, (file, function) in TASKS.items():
        namespace = {"re": re, "np": np, "random": random, "extract_mcq_answer": mcq.extract_mcq_answer}
        rows = []
        for reply in REPLIES:
            text = strip(reply, DEFAULT_TAGS)
            if benchmark == "worldsense":  # the letter rule inside worldsense_process_results
                letter = worldsense_letter(lmms / "tasks" / file, text)
            elif benchmark == "dailyomni":
                if len(text.split()) <= 5 and not any(c in f" {text} " for c in "ABCD"):
                    continue  # the release draws an unseeded random letter here
                parse = load_function(lmms / "tasks" / file, function, namespace)
                letter = parse(text, ["A", "B", "C", "D"], {c: "" for c in "ABCD"})
            else:
                letter = load_function(lmms / "tasks" / file, function, namespace, drop_imports=True)(text)
            rows.append({"reply": reply, "letter": letter})
        letters[benchmark] = rows
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    record = {
        "source": "xxayt/SEATS, lmms-eval/lmms_eval (api/reasoning.py, tasks/_task_utils/mcq_extract.py, "
                  "tasks/{worldsense,dailyomni,videomme,omnivideobench,lvomnibench}/utils.py)",
        "commit": commit or COMMIT,
        "recipe": "Each reply is passed through lmms-eval's strip_reasoning_tags with its default tags "
                  "(<think>, <analysis>), then through the task's own parser: worldsense's letter rule from "
                  "worldsense_process_results, dailyomni's parse_multi_choice_response with choices A-D and the "
                  "option texts empty (the task slices a string), videomme's extract_characters_regex "
                  "(extract_mcq_answer over A-D), omnivideobench's and lvomnibench's extract_characters_regex. "
                  "Daily-Omni replies that reach its unseeded random draw are left out. Written by "
                  "dev/release_parsers.py.",
        "letters": letters,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {sum(len(v) for v in letters.values())} replies")


def worldsense_letter(path: Path, text: str) -> str:
    "WorldSense's predicted letter: run the start of worldsense_process_results up to its prediction."
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "worldsense_process_results")
    body = []
    for statement in node.body:  # the statements before the ground truth is read
        if isinstance(statement, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "gt_answer" for t in statement.targets):
            break
        body.append(statement)
    node.body = body + [ast.Return(value=ast.Name(id="predicted_answer", ctx=ast.Load()))]
    namespace = {}
    exec(compile(ast.fix_missing_locations(ast.Module(body=[node], type_ignores=[])), str(path), "exec"), namespace)
    return namespace["worldsense_process_results"]({}, [text]) or ""


if __name__ == "__main__":
    here = Path(__file__).resolve().parents[1]
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else here / "data/fixtures/release/parsers.json")
