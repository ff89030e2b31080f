"""``train_hmdb.py live``: windows over a file paced as a camera, a pipe, a stalled or killed
writer, sources that cannot be opened, a model slower than the stream, the rendered stream."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import train_hmdb
from export import cli, live
from export.inputs import _to_network, _video_preset
from export.render import topk_panel_box
from network import build_model
from train.checkpoint import atomic_save, make_checkpoint

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["walk", "run", "jump"]
CLIP = {"clip_length": 4, "clip_size": 16, "short_side": 18}  # the tiny model's windows
FPS, FRAMES = 30, 60  # the test video: 2 s


def _write_video(path: Path, *, frames: int = FRAMES, fmt: str | None = None) -> Path:
    """A white square moving right on black, 64x48, H.264 at 30 fps."""
    container = av.open(str(path), "w", format=fmt)
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(frames):
        image = np.zeros((48, 64, 3), np.uint8)
        image[10:20, 2 * i % 56 : 2 * i % 56 + 8] = 255
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("live")
    torch.manual_seed(0)
    model = build_model("r3d_tiny", num_classes=len(LABELS))
    checkpoint = folder / "r3d_tiny.pth"
    atomic_save(make_checkpoint(model, args=CLIP, family="video", class_names=LABELS), checkpoint)
    parser = cli.argparse.ArgumentParser()
    cli.add_export_arguments(parser)
    onnx = folder / "r3d_tiny.onnx"
    assert (
        cli.run_export(parser.parse_args(["-m", str(checkpoint), "-o", str(onnx)]), family="video")
        == 0
    )
    return {
        "checkpoint": checkpoint,
        "onnx": onnx,
        "mp4": _write_video(folder / "square.mp4"),
        "ts": _write_video(folder / "square.ts", frames=90, fmt="mpegts"),
    }


def _run(capsys, *argv: str) -> tuple[int, list[dict], list[dict]]:
    """Exit code, the window records and the summary records printed on stdout."""
    code = train_hmdb.main(["live", *argv])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return (
        code,
        [r for r in lines if "window" in r],
        [r["summary"] for r in lines if "summary" in r],
    )


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


# ----------------------------------------------------------------------------- windows
def test_schedule_by_hand() -> None:
    schedule = live.Schedule(length=4, rate=2, stride=3)  # span 7: ends 6, 9, 12, ...
    assert schedule.span == 7
    assert [schedule.newest_end(i) for i in (5, 6, 8, 9, 13)] == [-1, 6, 6, 9, 12]
    assert list(schedule.indices(9)) == [3, 5, 7, 9]
    # frame 1 is in window 6 only (0 2 4 6: no); frame 0 is in window 6 (0 2 4 6)
    assert [schedule.wanted(i) for i in range(4)] == [True, False, True, True]
    assert schedule.wanted(8, last=6) is False and schedule.wanted(8) is True
    with pytest.raises(ValueError):
        live.Schedule(length=0)


def _frame(index: int) -> live.Frame:
    return live.Frame(index, index / FPS, time.monotonic(), np.zeros(1))


def test_ring_drops_frames_instead_of_queueing_when_the_model_is_behind() -> None:
    schedule = live.Schedule(length=4, stride=2)
    ring = live.FrameRing(schedule, block=False)
    assert ring.capacity == 6
    for i in range(40):  # a model that never asked: the ring stays at its size
        ring.put(_frame(i))
        assert len(ring.frames) <= ring.capacity
    window = ring.next_window(timeout=1)
    assert [f.index for f in window] == [36, 37, 38, 39]  # the newest window, not the oldest
    assert ring.skipped == (39 - 3) // 2  # windows ending 3, 5, ..., 37 were never run
    assert ring.dropped == 34  # frames 0..33 left unseen; 34, 35 are still in the ring
    ring.stop()
    assert ring.dropped == 36  # 34, 35 too (in no window that ran)


def test_ring_of_a_file_waits_for_the_model_and_drops_nothing() -> None:
    schedule = live.Schedule(length=4, stride=2)
    ring = live.FrameRing(schedule, block=True)
    writer = threading.Thread(
        target=lambda: [ring.put(_frame(i)) for i in range(30)] and ring.finish()
    )
    writer.start()
    ends = []
    while (window := ring.next_window(timeout=5)) is not None:
        ends.append(window[-1].index)
        assert len(ring.frames) <= ring.capacity
    writer.join()
    assert ends == list(range(3, 30, 2)) and ring.dropped == ring.skipped == 0


def test_a_stalled_ring_raises_instead_of_waiting_forever() -> None:
    ring = live.FrameRing(live.Schedule(length=4), block=False)
    ring.put(_frame(0))
    started = time.monotonic()
    with pytest.raises(live.StreamError, match=r"^source: no frame for 0\.3 s"):
        ring.next_window(timeout=0.3)
    assert time.monotonic() - started < 2


def test_per_frame_preparation_equals_the_clip_preprocessing_of_onnx_infer() -> None:
    """The reader prepares each frame once; stacked they equal the evaluation preset applied
    to the whole window (onnx-infer --mode stream), for 3D and channel-major 2D inputs."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    for dims in (3, 2):
        pre = {"clip_length": 4, "crop_size": [16, 16], "short_side": 18, "input_dims": [dims]}
        inputs = live.window_inputs("video", {"preprocess": pre, "input_shape": []})
        (got,) = inputs.window([inputs.frame(f) for f in frames])
        (want,) = _to_network(_video_preset(pre), pre, frames)
        assert got.shape == (1, *want.shape)
        np.testing.assert_allclose(got[0], want, atol=1e-6)


def test_the_reader_prepares_frames_on_one_torch_thread_and_the_model_keeps_its_own() -> None:
    """torch's intra-op pool in the reader only spins against the model (7-33 ms CPU per
    320x240 frame instead of 0.5 ms on 2 busy cores); the model's thread count is untouched."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen: dict[str, set[int]] = {"reader": set(), "model": set()}

    def prepare(image: np.ndarray) -> np.ndarray:
        seen["reader"].add(torch.get_num_threads())
        return image

    class Model(_SlowModel):
        def logits(self, *inputs):
            seen["model"].add(torch.get_num_threads())
            return super().logits(*inputs)

    inputs = live.WindowInputs(2, 1, prepare, lambda frames: [np.stack(frames)], np.zeros(1))
    summary = live.run_live(
        _FakeSource(30), Model(0.0), inputs, live.Schedule(2, 1, 2), emit=lambda r: None,
        realtime=True,
    )  # fmt: skip
    threads_after = torch.get_num_threads()
    torch.set_num_threads(before)
    assert seen == {"reader": {1}, "model": {2}} and threads_after == 2
    # the reader's CPU time per second of stream is measured (tiny frames: a few ms at most)
    assert summary.reader_cpu_ms_per_s is not None and 0 <= summary.reader_cpu_ms_per_s < 500


def test_the_decoder_runs_one_thread(files) -> None:
    source = live.VideoSource(str(files["mp4"]))
    try:
        assert source.stream.codec_context.thread_count == 1
        assert sum(1 for _ in source.frames()) == FRAMES
    finally:
        source.close()


# ----------------------------------------------------------------------------- a slow model
class _FakeSource:
    """Frames 0, 1, 2, ... of a 30 fps stream, made in memory."""

    name, live = "fake", True

    def __init__(self, count: int) -> None:
        self.count = count

    def frames(self):
        for i in range(self.count):
            yield i / FPS, np.full((2, 2, 3), i % 256, np.uint8)

    def close(self) -> None:
        pass


class _SlowModel:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.metadata = seconds, {}

    def logits(self, *inputs):
        time.sleep(self.seconds)
        return np.zeros((1, 3), np.float32)

    def label(self, index):
        return LABELS[index]


def test_a_model_slower_than_the_stream_drops_frames_and_its_delay_does_not_grow() -> None:
    inputs = live.WindowInputs(2, 1, lambda f: f, lambda frames: [np.stack(frames)], np.zeros(1))
    records = []
    summary = live.run_live(
        _FakeSource(75), _SlowModel(0.2), inputs, live.Schedule(2, 1, 4),
        emit=records.append, realtime=True,
    )  # fmt: skip
    # 2.5 s of stream, a window (frames e-1, e) due every 4 frames (133 ms), the model takes
    # 200 ms: about every other window is skipped, and its 2 frames are dropped
    assert summary.end == "end of stream" and summary.frames == 75
    assert summary.windows + summary.skipped_windows == len(range(1, 75, 4))
    assert 6 <= summary.windows <= 13 and summary.skipped_windows >= 6, summary
    assert summary.dropped_frames == 2 * summary.skipped_windows
    assert summary.delay_ms_end < 600, summary  # about one model call, not growing
    assert [r["window"] for r in records] == list(range(summary.windows))


# ----------------------------------------------------------------------------- the command
def test_live_on_a_file_paced_as_a_camera(files, capsys) -> None:
    started = time.monotonic()
    code, windows, (summary,) = _run(
        capsys, "--source", str(files["mp4"]), "--checkpoint", str(files["checkpoint"]),
        "--realtime", "--stride", "2",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert code == 0 and summary["end"] == "end of stream"
    assert elapsed > 0.9 * FRAMES / FPS  # paced at 30 fps, not decoded as fast as possible
    assert summary["frames"] == FRAMES and summary["windows"] == len(windows) > 0
    assert summary["windows"] + summary["skipped_windows"] == len(range(3, FRAMES, 2))
    first = windows[0]
    assert set(first) == {"window", "frames", "time", "top_k", "latency_ms", "delay_ms"}
    assert [name for name, _ in first["top_k"]] and all(n in LABELS for n, _ in first["top_k"])
    assert len(first["top_k"]) == 3 and abs(sum(p for _, p in first["top_k"]) - 1) < 1e-3
    assert all(b["time"] > a["time"] for a, b in itertools.pairwise(windows))
    assert summary["latency_ms_p50"] <= summary["latency_ms_p95"]


def test_live_on_a_plain_file_scores_every_window_with_onnx(files, capsys) -> None:
    code, windows, (summary,) = _run(
        capsys, "--source", str(files["mp4"]), "--onnx", str(files["onnx"]), "--stride", "8",
    )  # fmt: skip
    assert code == 0
    assert [w["frames"] for w in windows] == [[e - 3, e] for e in range(3, FRAMES, 8)]
    assert summary["dropped_frames"] == summary["skipped_windows"] == 0


def _pipe_stdin(monkeypatch, writer_command: list[str]) -> subprocess.Popen:
    """Standard input of this process replaced by a pipe that ``writer_command`` writes to."""
    read_end, write_end = os.pipe()
    writer = subprocess.Popen(writer_command, stdout=write_end)
    os.close(write_end)
    stdin = os.fdopen(read_end, "rb")
    monkeypatch.setattr(sys, "stdin", stdin)
    return writer


def test_live_on_a_pipe(files, capsys, monkeypatch) -> None:
    writer = _pipe_stdin(monkeypatch, ["cat", str(files["ts"])])
    code, windows, (summary,) = _run(
        capsys, "--source", "-", "--checkpoint", str(files["checkpoint"]), "--stride", "4"
    )
    writer.wait()
    assert code == 0 and summary["source"] == "stdin" and summary["frames"] == 90
    assert summary["windows"] == len(windows) > 0 and summary["end"] == "end of stream"


def test_a_writer_that_stops_mid_stream_is_one_line_and_exit_1(files, capsys, caplog, monkeypatch):
    size = files["ts"].stat().st_size
    writer = _pipe_stdin(
        monkeypatch, ["sh", "-c", f"head -c {size * 2 // 3} '{files['ts']}'; exec sleep 60"]
    )
    started = time.monotonic()
    try:
        code, _, (summary,) = _run(
            capsys, "--source", "-", "--checkpoint", str(files["checkpoint"]),
            "--read-timeout", "1",
        )  # fmt: skip
    finally:
        writer.kill()
        writer.wait()
    assert time.monotonic() - started < 10
    assert code == 1 and summary["end"] == "stream failed" and summary["frames"] > 0
    (error,) = _errors(caplog)
    assert error.startswith("stdin: ") and "no data for 1 s" in error and "\n" not in error


def test_a_writer_killed_mid_stream_ends_the_stream(files, capsys, caplog, monkeypatch) -> None:
    size = files["ts"].stat().st_size
    writer = _pipe_stdin(
        monkeypatch, ["sh", "-c", f"head -c {size // 2} '{files['ts']}'; exec sleep 60"]
    )
    threading.Timer(1.0, writer.kill).start()
    started = time.monotonic()
    code, _, (summary,) = _run(
        capsys, "--source", "-", "--checkpoint", str(files["checkpoint"]), "--read-timeout", "20"
    )
    writer.wait()
    assert time.monotonic() - started < 15  # the closed pipe ends it, not the 20 s timeout
    assert code == 0 and summary["end"] == "end of stream" and 0 < summary["frames"] < 90
    assert not _errors(caplog)


def _silent_http_server(payload: bytes | None) -> tuple[str, threading.Event]:
    """A URL whose server accepts, sends ``payload`` (None: not even a header), then stalls."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        connection, _ = server.accept()
        connection.recv(4096)
        if payload is not None:
            connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n\r\n" + payload)
        done.wait(30)
        connection.close()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/live.ts", done


@pytest.mark.parametrize("part", [None, 2 / 3])
def test_a_network_stream_that_goes_silent_times_out(files, capsys, caplog, part) -> None:
    """A server that never answers: exit 2 (cannot open); one that stops sending mid-stream:
    exit 1. Both after --read-timeout, one line each."""
    data = files["ts"].read_bytes()
    url, done = _silent_http_server(None if part is None else data[: int(len(data) * part)])
    started = time.monotonic()
    try:
        code, _, summaries = _run(
            capsys, "--source", url, "--checkpoint", str(files["checkpoint"]),
            "--read-timeout", "1",
        )  # fmt: skip
    finally:
        done.set()
    assert time.monotonic() - started < 10
    (error,) = _errors(caplog)
    assert "no data for 1 s" in error and error.startswith(url)
    if part is None:
        assert code == 2 and "cannot open" in error and not summaries
    else:
        assert code == 1 and summaries[0]["frames"] > 0 and "stream failed after" in error


def test_a_growing_file_is_followed_until_it_stops_growing(files, tmp_path, capsys) -> None:
    data = files["ts"].read_bytes()
    growing = tmp_path / "recording.ts"
    growing.write_bytes(data[:4096])

    def record() -> None:  # the rest in chunks, as a recorder writes it
        for start in range(4096, len(data), 4096):
            time.sleep(0.05)
            with open(growing, "ab") as out:
                out.write(data[start : start + 4096])

    writer = threading.Thread(target=record)
    writer.start()
    code, windows, (summary,) = _run(
        capsys, "--source", str(growing), "--follow", "--checkpoint", str(files["checkpoint"]),
        "--read-timeout", "1", "--stride", "4",
    )  # fmt: skip
    writer.join()
    assert code == 0 and summary["end"] == "end of stream"
    assert summary["frames"] == 90 and summary["windows"] == len(windows) > 0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.mp4", "missing.mp4: no such video file"),
        ("notes.txt", "notes.txt: cannot open"),
        ("rtsp://127.0.0.1:9/none", "rtsp://127.0.0.1:9/none: cannot open"),
    ],
)
def test_a_source_that_cannot_be_opened_is_one_line_and_exit_2(
    files, tmp_path, capsys, caplog, source, message
) -> None:
    (tmp_path / "notes.txt").write_text("not a video\n")
    path = source if "://" in source else str(tmp_path / source)
    started = time.monotonic()
    code, windows, summaries = _run(
        capsys, "--source", path, "--checkpoint", str(files["checkpoint"]), "--read-timeout", "3"
    )
    assert code == 2 and not windows and not summaries
    assert time.monotonic() - started < 10
    (error,) = _errors(caplog)
    assert message in error and "\n" not in error


def test_a_clip_length_the_onnx_file_does_not_take_fails_before_reading(files, capsys, caplog):
    code, _, _ = _run(
        capsys, "--source", str(files["mp4"]), "--onnx", str(files["onnx"]), "--clip-length", "6"
    )
    assert code == 2
    (error,) = _errors(caplog)
    assert "must be (N, 3, 4, 16, 16)" in error


def test_render_writes_the_annotated_stream_and_display_says_why_not(
    files, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "live.mp4"
    code = train_hmdb.main(
        ["live", "--source", str(files["mp4"]), "--checkpoint", str(files["checkpoint"]),
         "--render", str(out), "--display"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    notes = [line for line in captured.err.splitlines() if line.startswith("--display")]
    assert len(notes) == 1 and "continuing without a window" in notes[0]
    with av.open(str(out)) as video:
        stream = video.streams.video[0]
        assert stream.average_rate == FPS
        rendered = [f.to_ndarray(format="rgb24") for f in video.decode(stream)]
    assert len(rendered) == FRAMES
    with av.open(str(files["mp4"])) as video:
        source = next(video.decode(video=0)).to_ndarray(format="rgb24")
    x0, y0, x1, y1 = box = topk_panel_box(48, 64, 4)  # a title row and the top-3
    changed = np.abs(rendered[0].astype(int) - source.astype(int)).max(axis=2) > 40
    assert changed[y0:y1, x0:x1].any()  # the panel is drawn
    outside = changed.copy()
    outside[y0:y1, x0:x1] = False
    assert not outside.any(), box  # nothing else changed beyond compression noise


@pytest.mark.slow
def test_ctrl_c_on_a_real_process_prints_the_summary(files) -> None:
    """The script in its own process, reading standard input paced as a camera; SIGINT after
    the first window line: a summary, exit code 0, no traceback."""
    with open(files["ts"], "rb") as stdin:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "train_hmdb.py"), "live", "--source", "-",
             "--checkpoint", str(files["checkpoint"]), "--realtime", "--stride", "2"],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        first = process.stdout.readline()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert json.loads(first)["window"] == 0
    summary = json.loads(out.splitlines()[-1])["summary"]
    assert process.returncode == 0 and summary["end"] == "interrupted (Ctrl-C)"
    assert summary["frames"] < 90 and "Traceback" not in err


def test_the_live_benchmark_prints_its_table(capsys) -> None:
    from benchmarks import live as live_benchmark

    argv = ["--tiny", "--models", "gesturenet", "--runtimes", "pytorch-fp32", "ort-int8",
            "--seconds", "1", "--threads", "1"]  # fmt: skip
    assert live_benchmark.main(argv) == 0
    out = capsys.readouterr().out
    table = out[out.rindex("| model |") :].splitlines()
    rows = [line.split("|")[1:-1] for line in table[2:]]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        ("gesturenet", "pytorch-fp32"), ("gesturenet", "ort-int8"),
    ]  # fmt: skip
    assert all(r[6].strip().endswith("(3.75)") for r in rows)  # 30 fps, stride 8
    assert all(r[9].strip() in ("yes", "no") and r[10].strip() in ("yes", "no") for r in rows)
    assert float(rows[1][11]) >= 0  # reader CPU ms per stream second
    # only the INT8 row compares INT8 with FP32: "<share> of 12" windows, max probability diff
    assert rows[0][12].strip() == "-" and rows[1][12].strip().endswith("of 12")
    assert 0 <= float(rows[1][13]) <= 1


@pytest.mark.parametrize(
    ("skipped", "start", "end", "flat", "every"),
    [(0, 300, 400, True, True), (16, 527, 499, True, False), (0, 300, 600, False, False)],
)
def test_the_benchmark_tells_a_flat_delay_from_scoring_every_window(
    skipped, start, end, flat, every
):
    from benchmarks import live as live_benchmark

    # stride 8 at 30 fps: one window period is 267 ms
    summary = live.LiveSummary("src", "end", windows=20, skipped_windows=skipped,
                               delay_ms_start=start, delay_ms_end=end)  # fmt: skip
    row = live_benchmark.Row("r3d_18", "ort-int8", summary, stride=8)
    assert (row.delay_flat(), row.every_window()) == (flat, every)


def test_agreement_of_a_file_with_itself_is_complete(files) -> None:
    from benchmarks import live as live_benchmark

    windows = [np.random.default_rng(i).standard_normal((1, 3, 4, 16, 16)).astype(np.float32)
               for i in range(3)]  # fmt: skip
    agreed = live_benchmark.agreement(str(files["onnx"]), str(files["onnx"]), windows)
    assert agreed == live_benchmark.Agreement(3, 1.0, 0.0)


@pytest.mark.parametrize("preprocess", [{}, {"clip_length": 8}])
def test_a_video_model_without_actrec_preprocessing_is_refused_in_one_line(preprocess):
    # an ONNX file exported elsewhere has no preprocessing metadata; --clip-length alone is not
    # enough (crop size and normalisation are unknown)
    metadata = {"input_shape": [[3, 8, 64, 64]], "preprocess": preprocess}
    with pytest.raises(ValueError, match="carries no ActRec preprocessing") as error:
        live.window_inputs("video", metadata, length=8)
    assert "\n" not in str(error.value)
