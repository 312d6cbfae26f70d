"""Encoding filmed frames: the one place that writes videos (`derl eval --video`, the videos
filmed during training) and the animated GIFs TensorBoard shows."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from derl.checkpoint import replacing

VIDEO_SUFFIXES = (".mp4", ".gif")
PREVIEW_SIDE = 320  # TensorBoard previews at most about this many pixels on their longer side


def gif(frames: np.ndarray, fps: float) -> bytes:
    """An animated GIF of `frames` (T, H, W, 3 uint8) that loops."""
    from PIL import Image  # only when filming

    # Octree quantisation: about 4x faster than Pillow's default median cut and smaller files,
    # which matters when a run films itself every N steps.
    # A GIF's frame delay is whole centiseconds, and browsers play delays under 20 ms at 100 ms:
    # faster envs (MuJoCo's 67-125 fps) keep every k-th frame instead, at a delay that fits.
    # (the first k whose delay rounds to within 6%: 30 fps keeps every 2nd frame at 70 ms).
    every = max(1, math.ceil(fps / 50))
    while abs(round(1000 * every / fps, -1) * fps / (1000 * every) - 1) > 0.06 and every < fps:
        every += 1
    delay = max(20, round(1000 * every / fps, -1))
    images = [
        Image.fromarray(frame).quantize(method=Image.Quantize.FASTOCTREE)
        for frame in frames[::every]
    ]
    out = io.BytesIO()
    images[0].save(
        out, format="GIF", save_all=True, append_images=images[1:], duration=delay, loop=0
    )
    return out.getvalue()


def write_video(frames: np.ndarray, fps: float, path: str | os.PathLike) -> Path:
    """`frames` as an .mp4 (H.264 through imageio-ffmpeg) or a .gif, by the suffix of `path`; a
    write that fails keeps the file that was there."""
    path = Path(path)
    with replacing(path) as tmp:
        if path.suffix.lower() == ".gif":
            tmp.write_bytes(gif(frames, fps))
        else:
            import imageio.v3 as iio  # only when filming

            iio.imwrite(tmp, frames, fps=fps, macro_block_size=1)
    return path


def preview(frames: np.ndarray) -> np.ndarray:
    """Every k-th pixel of each frame, so that the longer side is at most about PREVIEW_SIDE:
    a GIF of full-size frames is slow to encode and bloats the TensorBoard event file."""
    k = max(1, math.ceil(max(frames.shape[1:3]) / PREVIEW_SIDE))
    return frames[:, ::k, ::k]
