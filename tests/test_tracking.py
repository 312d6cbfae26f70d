"""--capture-video-every (videos in the logdir and TensorBoard) and --track (W&B, offline here)."""

import io
import json
import struct
import sys

import imageio.v3 as iio
import pytest
from conftest import scalars
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import derl
from derl.cli import main
from derl.tracking import RUN_ID, Tracker

VIDEO = "eval/video/_type"  # W&B's row holds a video as its keys _type, path, size, sha256


def config(logdir, **kw):
    kw = {"num_train_steps": 2048, "checkpoint_every": 1024, "device": "cpu", **kw}
    return derl.make_config("ppo", "CartPole-v1", logdir=str(logdir), **kw)


def test_capture_video_every_films_to_the_logdir_and_tensorboard(tmp_path, one_thread):
    run = tmp_path / "run"
    derl.train(config(run, capture_video_every=1024), progress=False)
    videos = sorted((run / "videos").iterdir())
    assert [v.name for v in videos] == ["step-000000001024.mp4", "step-000000002048.mp4"]
    frames = iio.imread(videos[-1])
    assert frames.shape[0] > 5 and frames.shape[1:] == (400, 600, 3) and frames.std() > 0
    acc = EventAccumulator(str(run), size_guidance={"images": 0})
    acc.Reload()
    images = acc.Images("eval/video")
    assert [i.step for i in images] == [1024, 2048]
    gif = Image.open(io.BytesIO(images[-1].encoded_image_string))
    # The preview: an animated GIF of every second pixel (Pillow merges repeated frames).
    assert gif.format == "GIF" and gif.size == (300, 200) and gif.n_frames > 5


class FakeRun:
    def __init__(self):
        self.rows = []

    def log(self, row):
        self.rows.append(row)


def test_tracker_logs_one_row_per_step_and_a_point_for_every_value():
    tracker = Tracker(FakeRun())
    tracker.log("episode/return", 10.0, 8)
    tracker.log("episode/length", 10, 8)
    tracker.log("episode/return", 12.0, 8)  # a second episode that ended at the same step
    tracker.log("train/loss", 0.5, 4)  # the metrics of the updates come a rollout late
    tracker.commit()
    assert tracker.run.rows == [
        {"episode/return": 10.0, "episode/length": 10, "global_step": 8},
        {"episode/return": 12.0, "global_step": 8},
        {"train/loss": 0.5, "global_step": 4},
    ]


def test_track_without_wandb_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails as if not installed
    logdir = tmp_path / "run"
    argv = ["ppo", "--env-id", "CartPole-v1", "--track", "--logdir", str(logdir)]
    assert main(argv) == 2
    expected = 'derl: error: --track needs wandb: pip install "derl[wandb]"\n'
    assert capsys.readouterr().err == expected
    assert not logdir.exists()


def wandb_records(path):
    """The records of a .wandb file: after a 7-byte header, LevelDB's log format (blocks of
    32 KiB; records of a 7-byte header, crc32 length type, that a block end may split into
    first, middle and last parts), each a wandb_internal_pb2.Record."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, parts = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:  # zero padding
            continue
        parts = chunk if kind in (1, 2) else parts + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def history(path) -> list[dict]:
    """The rows a .wandb file holds: {key: value}; a video's keys are eval/video/_type ..."""
    rows = [r.history.item for r in wandb_records(path) if r.HasField("history")]
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in row}
        for row in rows
    ]


def test_track_logs_config_scalars_and_videos_and_resume_continues_the_run(
    tmp_path, monkeypatch, one_thread
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    c = config(run, track=True, capture_video_every=1024, wandb_group="g")
    derl.train(c, progress=False, stop_after=1280)  # as Ctrl-C: a checkpoint, then stop
    derl.resume(run, progress=False)

    run_id = (run / RUN_ID).read_text().strip()
    offline = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(d.name.endswith(f"-{run_id}") for d in offline)
    first, second = (next(d.glob(f"run-{run_id}.wandb")) for d in offline)

    runs = [r.run for r in wandb_records(first) if r.HasField("run")]
    config_json = {item.key: json.loads(item.value_json) for item in runs[0].config.update}
    assert config_json["env_id"] == "CartPole-v1" and config_json["alg"] == "ppo"
    assert config_json["track"] is True and runs[0].run_group == "g"

    rows = history(first) + history(second)
    # Every TensorBoard scalar, each point at its env step, from both processes.
    tensorboard = {tag: [(e.step, e.value) for e in events] for tag, events in scalars(run).items()}
    wandb_points = {
        tag: [(row["global_step"], row[tag]) for row in rows if tag in row] for tag in tensorboard
    }
    assert wandb_points.keys() == tensorboard.keys() and "train/value_loss" in tensorboard
    for tag, points in tensorboard.items():
        assert [s for s, _ in wandb_points[tag]] == [s for s, _ in points], tag
        assert [v for _, v in wandb_points[tag]] == pytest.approx([v for _, v in points]), tag
    assert [step for step, _ in wandb_points["train/value_loss"]] == list(range(256, 2049, 256))
    assert max(step for step, _ in wandb_points["episode/return"]) > 1280
    videos = [(row["global_step"], row[VIDEO]) for row in rows if VIDEO in row]
    assert videos == [(1024, "video-file"), (2048, "video-file")]
    media = sorted(d for o in offline for d in (o / "files" / "media" / "videos").rglob("*.mp4"))
    assert len(media) == 2 and all(m.stat().st_size > 0 for m in media)
