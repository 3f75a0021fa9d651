"""`seats_analysis.media` decoding against the authors' decoder, where it can be installed.

qwen-omni-utils with its decord backend (`pip install qwen-omni-utils decord`) is the reference the
paper's authors decode video with; librosa is the reference for audio resampling. Both are optional
(no system FFmpeg is needed by the package itself), so these tests skip when they are missing.
"""
import os

import numpy as np
import pytest
import torch

from seats_analysis import media
from seats_analysis.testing import coloured_frames, index_frames, tone

os.environ.setdefault("FORCE_QWENVL_VIDEO_READER", "decord")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    index = media.write_clip(root / "index.mp4", index_frames(250, size=(72, 128)), fps=25,
                             audio=tone(10, 440, sample_rate=44100), sample_rate=44100, gop=25)
    colour = media.write_clip(root / "colour.mkv", coloured_frames(30, (48, 64), (40, 60, 220)), fps=10)
    noise = np.random.default_rng(0).integers(0, 256, (40, 90, 160, 3), dtype=np.uint8)
    return [index, colour, media.write_clip(root / "noise.mp4", noise, fps=12, gop=7)]


@pytest.mark.parametrize("max_frames", [8, 128])
def test_frames_match_qwen_omni_utils(clips, max_frames):
    pytest.importorskip("decord")
    vision = pytest.importorskip("qwen_omni_utils.v2_5.vision_process")
    torch.set_num_threads(1)
    for path in clips:
        ours = media.load_video(path, max_frames)  # (T, H, W, 3) uint8
        theirs, meta = vision.fetch_video(
            {"video": str(path), "fps": media.SAMPLE_FPS, "max_frames": max_frames, "min_pixels": media.MIN_PIXELS,
             "max_pixels": media.MAX_PIXELS, "total_pixels": media.TOTAL_PIXELS}, return_video_metadata=True)
        assert meta["video_backend"] == "decord"
        theirs = theirs.permute(0, 2, 3, 1).numpy()  # (T, C, H, W) float -> (T, H, W, C)
        assert ours.shape == theirs.shape
        assert list(meta["frames_indices"]) == media.frame_indices(media.video_info(path).total_frames, len(ours))
        assert np.array_equal(ours.astype(np.float32), theirs)  # bit for bit


def test_audio_resampling_matches_librosa(clips):
    librosa = pytest.importorskip("librosa")
    import av
    with av.open(str(clips[0])) as container:
        to_float = av.AudioResampler(format="fltp")
        native = np.concatenate([f.to_ndarray()[0] for frame in container.decode(audio=0)
                                 for f in to_float.resample(frame)])
    ours = media.load_audio(clips[0], max_seconds=None)
    theirs = librosa.resample(native, orig_sr=44100, target_sr=media.SAMPLE_RATE)  # librosa.load's default
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
