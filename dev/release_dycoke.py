"""Record what the DyCoke release's temporal token merging keeps (a development tool, not run in CI).

Usage: python dev/release_dycoke.py /path/to/DyCoke-checkout [out.json]

The release (`KD-TAO/DyCoke`) merges tokens across frames in one function of `llava/model/llava_arch.py`. That
file imports the whole LLaVA package, so only the function's definition is taken from it (with `ast`) and
executed on its own, with `torch` in its namespace. It returns the kept tokens' features, not their indices: the
namespace's `torch.cat` notes the list of per-frame pieces the function concatenates (piece i holds tokens of
frame i, as the function builds it), and each kept row is found again among its frame's input rows, which are
all different within a frame. The cases vary the frame count (one to sixteen: odd, not a multiple of four, the
counts where the release raises), the token count per frame, the merging ratio, extra tokens after the last
whole frame, and frames that repeat (a static clip, every second frame a copy). Features are stored in the
record, so the test needs no random generator. Nothing of the release is copied here.
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

import torch

FUNCTION = "dycole_ttm"  # the release's name for it
SOURCE = "llava/model/llava_arch.py"
DIM = 6
CASES = [  # (frames, tokens per frame, merging ratio, pattern, extra tokens after the last whole frame)
    *[(frames, 8, 0.7, "random", 0) for frames in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16)],
    (8, 12, 0.3, "random", 0), (9, 12, 0.5, "random", 0), (6, 10, 0.0, "random", 0), (10, 10, 1.0, "random", 0),
    (12, 7, 0.7, "random", 0), (7, 8, 0.7, "random", 5),
    (8, 8, 0.7, "static", 0), (9, 8, 0.7, "static", 0), (12, 8, 0.7, "pairs", 0), (11, 8, 0.5, "pairs", 0),
    (10, 8, 0.7, "half static", 0),
]


class _RecordingTorch:
    "`torch`, except that `cat` also keeps the pieces it was given."

    def __init__(self):
        self.pieces = None

    def __getattr__(self, name):
        return getattr(torch, name)

    def cat(self, tensors, dim=0):
        self.pieces = list(tensors)
        return torch.cat(tensors, dim=dim)


def release_function(checkout: Path):
    "The release's merging function, defined alone from its source file, and the namespace it runs in."
    tree = ast.parse((checkout / SOURCE).read_text())
    definition = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == FUNCTION)
    namespace = {"torch": _RecordingTorch()}
    exec(compile(ast.Module([definition], type_ignores=[]), SOURCE, "exec"), namespace)
    return namespace[FUNCTION], namespace["torch"]


def features_of(frames: int, tokens: int, pattern: str, extra: int, seed: int) -> torch.Tensor:
    "Frame features (frames x tokens + extra, DIM) in float32, with frames repeated as `pattern` says."
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(frames, tokens, DIM, generator=generator)
    if pattern == "static":
        x[1:] = x[0]
    elif pattern == "pairs":
        x[1::2] = x[0::2][:frames // 2]
    elif pattern == "half static":
        x[frames // 2:] = x[frames // 2]
    return torch.cat([x.flatten(0, 1), torch.randn(extra, DIM, generator=generator)])


def kept_indices(features: torch.Tensor, tokens: int, pieces: list, output: torch.Tensor) -> list[int]:
    "Input row of each output row, in the release's output order: piece i comes from frame i."
    assert torch.equal(torch.cat(pieces), output), "the pieces noted are the function's output"
    kept = []
    for frame, piece in enumerate(pieces):
        rows = features[frame * tokens:(frame + 1) * tokens]
        for row in piece:
            match = (rows == row).all(dim=1).nonzero().flatten().tolist()
            assert len(match) == 1, f"frame {frame}: a kept row matches {len(match)} input rows"
            kept.append(frame * tokens + match[0])
    return kept


def record(checkout: Path) -> dict:
    function, recording = release_function(checkout)
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or None
    cases = []
    for seed, (frames, tokens, ratio, pattern, extra) in enumerate(CASES):
        features = features_of(frames, tokens, pattern, extra, seed)
        case = dict(frames=frames, tokens_per_frame=tokens, merging_ratio=ratio, pattern=pattern, extra=extra,
                    features=features.tolist())
        recording.pieces = None
        try:
            output = function(features.clone(), tokens, ratio)
        except Exception as error:  # the release fails on short clips; what it raises is part of the record
            case["error"] = f"{type(error).__name__}: {error}"
        else:
            case["kept"] = kept_indices(features, tokens, recording.pieces, output)
        cases.append(case)
    return dict(release="KD-TAO/DyCoke", commit=commit, source=f"{SOURCE}:{FUNCTION}", torch=torch.__version__,
                recipe="python dev/release_dycoke.py <checkout>", cases=cases)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    default = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "release" / "dycoke.json"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else default
    result = record(Path(sys.argv[1]))
    out.write_text(json.dumps(result) + "\n")
    errors = sum("error" in case for case in result["cases"])
    print(f"{len(result['cases'])} cases ({errors} where the release raises) written to {out}")
