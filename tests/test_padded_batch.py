"""A row gets the same answer alone and left-padded in a batch beside a clip of another length: every method of
`METHODS` at every named setting (`RATIO_PAIRS`), on both built-in organisms.

The batch is built from each row's own processor outputs (`synth.item_inputs` of that item alone), left-padded
together. The processor's own batch is not row-independent: its feature extractor pads the shorter clip's waveform
to the longest one before the short-time Fourier transform, so the shorter clip's last mel frame sees the padding's
zeros where, alone, it sees the clip reflected. That moves the last audio token slightly, and where near-ties decide
a selection (SEATS' Stage I on the Qwen3 organism's steady tones at R35 and R25) it decides which token is kept.
`test_the_batch_is_the_processors_but_for_the_last_mel_frame` checks that this is the only difference.

Near-ties decide some selections on the rows themselves too (SEATS' Stage I and DivPrune's max-min greedy over the
Qwen3 organism's steady tones), and batched matrix products, which differ from a row's alone by ~1e-5 with some CPU
kernels and torch releases, can break them otherwise. A row whose answers differ is held to its kept counts instead:
it passes only where its kept positions differ alone and batched, with the same number kept at every boundary, and
near-ties decide them (`rounding_sensitive`: they move when the row's media inputs move by a relative 1e-3). A row
whose answers differ while it keeps the same positions, or whose selection no near-tie decides, fails.

On the transformers 4.57 line the Qwen3-Omni audio encoder itself is not row-independent: the stock thinker, with
nothing pruned, gives the short row's audio tokens other embeddings beside a longer clip (the 5.x line gives the same
ones). No method can answer alone and batched alike there, so those cases are skipped, and
`test_the_stock_qwen3_audio_encoder_of_4_57_is_batch_dependent` keeps the reason true."""
import pytest
import torch
from packaging.version import Version
from transformers import BatchFeature

from seats_analysis.compat import TRANSFORMERS_VERSION
from seats_analysis.catalog import ORGANISMS, RATIO_PAIRS, STUDIED_ORGANISMS
from seats_analysis.harness import method_context
from seats_analysis.media import SAMPLE_RATE
from seats_analysis.methods import METHODS
from seats_analysis.organism import learned_task, load_organism
from seats_analysis.plan import model_family
from seats_analysis.schedule import Schedule
from seats_analysis.synth import FPS, item_inputs
from seats_analysis.testing import rounding_sensitive

SHORT_SECONDS = 1  # the short clip (2 frames at 2 fps), padded beside a full 8-second one
TOLERANCE = 1e-4  # max abs difference of the last-position logits; batched matrix products differ by ~1e-5
LEFT_PADDED = ("input_ids", "attention_mask")  # (1, S): padded on the left
RIGHT_PADDED = ("input_features", "feature_attention_mask")  # (1, ..., T): padded on the right
CONCATENATED = ("pixel_values_videos", "video_grid_thw", "video_second_per_grid")  # one entry per item
# the families whose stock audio encoder gives a row other embeddings in a padded batch, on this transformers
STOCK_BATCH_DEPENDENT = ("qwen3",) if TRANSFORMERS_VERSION < Version("5") else ()


def _pad(x: torch.Tensor, width: int, value, left: bool) -> torch.Tensor:
    "`x` padded with `value` along its last dimension to `width`."
    pad = x.new_full((*x.shape[:-1], width - x.shape[-1]), value)
    return torch.cat([pad, x] if left else [x, pad], dim=-1)


def padded_batch(rows: list, pad_token_id: int) -> BatchFeature:
    "One left-padded batch of processor outputs of one row each, every row's tensors as they were alone."
    unknown = set(rows[0]) - {*LEFT_PADDED, *RIGHT_PADDED, *CONCATENATED}
    assert not unknown, f"no padding rule for {sorted(unknown)}"
    batch = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        if name in CONCATENATED:
            batch[name] = torch.cat(values)
            continue
        width = max(x.shape[-1] for x in values)
        value = pad_token_id if name == "input_ids" else 0
        batch[name] = torch.cat([_pad(x, width, value, left=name in LEFT_PADDED) for x in values])
    return BatchFeature(batch)


def _short(item) -> dict:
    "The item's clip cut to its first `SHORT_SECONDS` seconds."
    return dict(item, frames=item["frames"][:SHORT_SECONDS * FPS], audio=item["audio"][:SHORT_SECONDS * SAMPLE_RATE])


@pytest.fixture(scope="module", params=STUDIED_ORGANISMS)
def organism(request):
    """(family, thinker, processor, schedule, the two rows alone, their padded batch) of one studied organism, on the
    first two test items of its task, built once."""
    thinker, processor = load_organism(request.param)
    first, second = learned_task(request.param).evaluation_items("test", 2)
    items = [_short(first), second]  # the short row first: it is the one padded
    rows = [item_inputs(processor, [item]) for item in items]
    batch = padded_batch(rows, processor.tokenizer.pad_token_id)
    return dict(family=model_family(thinker.config), thinker=thinker, processor=processor, items=items, rows=rows,
                batch=batch, schedule=Schedule.load(ORGANISMS[request.param]))


def test_the_batch_is_the_processors_but_for_the_last_mel_frame(organism):
    rows, batch = organism["rows"], organism["batch"]
    processed = item_inputs(organism["processor"], organism["items"])
    assert processed["attention_mask"][0, 0] == 0 and processed["attention_mask"][1].all()  # the short row is padded
    for name in processed:
        if name != "input_features":
            assert torch.equal(processed[name], batch[name]), name
    frames = int(rows[0]["feature_attention_mask"].sum())
    torch.testing.assert_close(processed["input_features"][1], batch["input_features"][1], rtol=0, atol=0)
    torch.testing.assert_close(processed["input_features"][0, :, :frames - 1], batch["input_features"][0, :, :frames - 1],
                               rtol=0, atol=0)


def _answer(thinker, schedule, method: str, video_ratio: float, audio_ratio: float, inputs) -> tuple:
    """Last-position logits (B, V) of one prefill of `inputs` with `method` at the setting, in a fresh block, and each
    row's kept positions at each boundary ({k: [position, ...]}, positions counted from the row's first real token)."""
    with torch.no_grad(), method_context(method, thinker, schedule, video_ratio, audio_ratio) as run:
        logits = thinker(**inputs, use_audio_in_video=True).logits[:, -1]
    prefills = getattr(run, "events", None) or []
    events = prefills[0].events if prefills else []
    pads = (inputs["attention_mask"] == 0).sum(1).tolist()  # left padding of each row
    kept = [{event.k: [p - pad for p in event.kept[row].tolist() if p >= pad] for event in events}
            for row, pad in enumerate(pads)]
    return logits, kept


def _counts(kept: dict) -> dict:
    return {k: len(positions) for k, positions in kept.items()}


CASES = [("full", "full")] + [(method, setting) for method in METHODS if method != "full" for setting in RATIO_PAIRS]


def _audio_embeddings(thinker, inputs) -> torch.Tensor:
    "The stock audio encoder's output tokens (N, D) for `inputs`, every row's in order."
    encoder = thinker.audio_tower if hasattr(thinker, "audio_tower") else thinker.model.audio_tower
    outputs = []
    handle = encoder.register_forward_hook(lambda module, args, out: outputs.append(out.last_hidden_state))
    try:
        with torch.no_grad():
            thinker(**inputs, use_audio_in_video=True)
    finally:
        handle.remove()
    return outputs[0]


def test_the_stock_qwen3_audio_encoder_of_4_57_is_batch_dependent(organism):
    if organism["family"] not in STOCK_BATCH_DEPENDENT:
        pytest.skip(f"the stock {organism['family']} audio encoder is row-independent on transformers "
                    f"{TRANSFORMERS_VERSION}")
    alone = _audio_embeddings(organism["thinker"], organism["rows"][0])  # (N0, D)
    batched = _audio_embeddings(organism["thinker"], organism["batch"])  # (N0 + N1, D), the short row's first
    assert (alone - batched[: len(alone)]).abs().max() > TOLERANCE


@pytest.mark.parametrize("method,setting", CASES)
def test_a_row_answers_the_same_alone_and_padded(organism, method, setting):
    if organism["family"] in STOCK_BATCH_DEPENDENT:
        pytest.skip(f"transformers {TRANSFORMERS_VERSION}'s stock {organism['family']} audio encoder is not "
                    "row-independent in a padded batch")
    thinker, schedule = organism["thinker"], organism["schedule"]
    video_ratio, audio_ratio = (1.0, 1.0) if setting == "full" else RATIO_PAIRS[setting]
    answer = lambda inputs: _answer(thinker, schedule, method, video_ratio, audio_ratio, inputs)
    batched, batched_kept = answer(organism["batch"])  # (2, V)
    for index, row in enumerate(organism["rows"]):
        alone, (alone_kept,) = answer(row)
        difference = (alone[0] - batched[index]).abs().max().item()
        if difference <= TOLERANCE:
            continue
        where = f"{organism['family']} {method} {setting}: row {index} differs by {difference:.3g} alone and batched"
        assert alone_kept != batched_kept[index], f"{where}, with the same kept positions"
        assert _counts(alone_kept) == _counts(batched_kept[index]), (
            f"{where}: kept counts {_counts(alone_kept)} alone, {_counts(batched_kept[index])} batched")
        assert rounding_sensitive(lambda moved: answer(moved)[1][0], row), f"{where}, and no near-tie decides its kept"
