"""Every method of `methods.METHODS` on tiny thinkers of both families on a CUDA device, in bfloat16 and float16
(a development check for a machine with a GPU; the test suite checks the same on the CPU).

Usage: python dev/gpu_dtypes.py [out.csv]

Each run generates 4 tokens from a left-padded batch of two synthetic clips inside the method's block, with CUDA's
sync debug mode set to warn, and records whether it ran, the kept video and audio retention and the number of
host synchronisations CUDA reported. Prints the table and writes it to `out.csv` if given.
"""
import sys
import traceback
import warnings

import pandas as pd
import torch

from seats_analysis.methods import METHODS
from seats_analysis.stand_ins import FAMILIES, tiny_thinker
from seats_analysis.testing import clip_batch, tiny_schedule

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # the CPU only to try the script itself


def sync_debug(mode: str):
    if DEVICE == "cuda":
        torch.cuda.set_sync_debug_mode(mode)


def check(family: str, dtype: torch.dtype, method: str) -> dict:
    "One method on one family and dtype: did it run, what did it keep, how many syncs did CUDA warn of."
    thinker = tiny_thinker(family).to(DEVICE, dtype)
    inputs = clip_batch(family).to(DEVICE)
    inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
    row = dict(family=family, dtype=str(dtype).removeprefix("torch."), method=method)
    try:
        block = METHODS[method](thinker, tiny_schedule(family), video_ratio=0.25, audio_ratio=0.35)
        with warnings.catch_warnings(record=True) as caught, block as run:
            warnings.simplefilter("always")
            sync_debug("warn")
            thinker.generate(**inputs, use_audio_in_video=True, max_new_tokens=4, do_sample=False)
            sync_debug("default")
        retention = getattr(run, "retention", None) or {}
        row.update(ran=True, video=retention.get("video"), audio=retention.get("audio"),
                   cuda_syncs=sum("synchroniz" in str(w.message) for w in caught), error="")
    except Exception as error:  # the table reports it
        sync_debug("default")
        row.update(ran=False, error=f"{type(error).__name__}: {error}"[:200])
        traceback.print_exc()
    return row


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu")
    rows = [check(family, dtype, method) for family in FAMILIES for dtype in (torch.bfloat16, torch.float16)
            for method in METHODS]
    table = pd.DataFrame(rows)
    print(table.to_string())
    if len(sys.argv) > 1:
        table.to_csv(sys.argv[1], index=False)
    sys.exit(0 if table.ran.all() else 1)
