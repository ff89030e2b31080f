"""One prepared GPU check: every CUDA path of ActRec run once, one table, in a few minutes.

    PYTHONUNBUFFERED=1 python benchmarks/gpu_check.py --out $OUT      # a GPU node, <= 5 minutes
    python benchmarks/gpu_check.py --cpu-smoke --out /tmp/gpu_check   # its CPU subset, seconds

Steps (each ends ok / failed with the error's last line / skipped with the reason; a failed step
never stops the others):

1. environment: torch, torchvision, CUDA, cuDNN, GPU name and memory, optional packages;
2. ``pytest -m gpu`` (the tests that skip on a machine without CUDA);
3. training-step throughput of ``r3d_18`` and ``srtg_r3d_18`` at 16x112x112, batch 32: fp32,
   bf16 autocast, bf16 + channels_last_3d, bf16 + channels_last_3d + torch.compile (compile time
   reported apart), fp16 + GradScaler; each as a ratio of fp32 in the same run, with peak memory;
4. the clip loader (``benchmarks/loader.py``): CPU workers 0/4/8/16 and the device-decode path,
   beside the step rate of step 3;
5. a two-epoch ``train_hmdb.py train --amp --channels-last`` on a small synthetic set, killed
   (SIGKILL) after its first epoch and resumed, then ``evaluate`` and ``export`` (ONNX parity);
6. DDP under ``torchrun --nproc_per_node 1`` (and 2 where the machine has two GPUs), NCCL on CUDA;
7. a TensorRT FP16 engine of the exported network, if ``tensorrt`` imports.

The table goes to stdout and to ``OUT/gpu_check.txt``; every figure also to ``OUT/gpu_check.json``.
``--cpu-smoke`` runs the same steps with tiny networks and shapes on the CPU (CUDA-only rows are
skipped with the reason): ``tests/test_gpu_check.py`` runs it, so the script cannot rot.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import interleaved_median  # noqa: E402
from benchmarks.train_step import Mode, make_step  # noqa: E402
from train.malloc import reuse_large_buffers  # noqa: E402

# Packages the scripts import that a GPU image may lack (carry them as wheels; README "GPU").
OPTIONAL_PACKAGES = ("av", "coloredlogs", "ffmpeg", "imageio_ffmpeg", "onnxruntime", "tensorrt")
# Step 3's numeric modes, in table order: name -> settings (benchmarks/train_step.Mode).
THROUGHPUT_MODES = {
    "fp32": Mode(),
    "bf16": Mode(amp=True),
    "bf16+cl3d": Mode(amp=True, channels_last=True),
    "bf16+cl3d+compile": Mode(amp=True, channels_last=True, compile=True),
    "fp16+scaler": Mode(amp=True, amp_dtype="fp16"),
}


@dataclass(frozen=True)
class Sizes:
    """Networks and shapes of one run: the real check on a GPU, tiny ones for ``--cpu-smoke``."""

    networks: tuple[str, ...]
    batch_size: int
    clip_length: int
    clip_size: int
    steps: int
    train_network: str
    loader_workers: tuple[int, ...]


GPU_SIZES = Sizes(("r3d_18", "srtg_r3d_18"), 32, 16, 112, 5, "r3d_18", (0, 4, 8, 16))
SMOKE_SIZES = Sizes(("r3d_tiny", "srtg_r3d_tiny"), 2, 4, 32, 1, "r3d_tiny", (0, 2))


class Skip(Exception):
    """A step that cannot run here; the message is the reason."""


@dataclass
class StepResult:
    """One row of the summary table."""

    step: str
    status: str  # ok | failed | skipped
    detail: str
    seconds: float
    rows: list[dict] = field(default_factory=list)


@dataclass
class Context:
    """What the steps share: device, sizes, folders, the deadline and earlier figures."""

    device: torch.device
    sizes: Sizes
    out: Path
    work: Path
    deadline: float
    smoke: bool
    step_rate: dict[str, float] = field(default_factory=dict)
    onnx_path: Path | None = None
    data: tuple[Path, Path] | None = None  # (data root, splits folder)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def need(self, seconds: float) -> None:
        if self.left() < seconds:
            raise Skip(f"time budget: {self.left():.0f} s left, this step needs ~{seconds:.0f} s")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the table and JSON")
    parser.add_argument("--cpu-smoke", action="store_true", help="CPU subset, tiny shapes")
    parser.add_argument("--budget-s", type=float, default=290.0, help="wall-clock budget")
    parser.add_argument("--steps", nargs="+", type=int, default=None, help="only these steps")
    return parser


# ----------------------------------------------------------------------------- helpers
def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (an error's message), shortened for the table."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "(no output)")[:200]


def error_line(output: str) -> str:
    """The line that names a failed command's error: the last one that says "error" (torchrun
    prints its own report after the child's), else the last line."""
    noise = ("ChildFailedError", "error_file", "errors.html", "elastic")
    lines = [
        line for line in output.splitlines()
        if "error" in line.lower() and not any(word in line for word in noise)
    ]  # fmt: skip
    return last_line(lines[-1]) if lines else last_line(output)


def run_cli(argv: list[str], ctx: Context, timeout: float, **env: str) -> str:
    """Run a command from the repository root; its output, or RuntimeError with its last line."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    timeout = max(5.0, min(timeout, ctx.left()))
    try:
        done = subprocess.run(
            argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"{Path(argv[1]).name}: timed out after {timeout:.0f} s") from error
    output = done.stdout + done.stderr
    (ctx.out / "logs").mkdir(exist_ok=True)
    with open(ctx.out / "logs" / "commands.log", "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n{output}\n(exit {done.returncode})\n\n")
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {error_line(output)}")
    return output


def hmdb(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "train_hmdb.py"), *args]


# ----------------------------------------------------------------------------- steps
def step_environment(ctx: Context) -> tuple[str, list[dict]]:
    import torchvision

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else "none",
        "device": str(ctx.device),
    }
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = f"{props.total_memory / 2**30:.1f}"
        info["gpu_count"] = str(torch.cuda.device_count())
    missing = [name for name in OPTIONAL_PACKAGES if importlib.util.find_spec(name) is None]
    info["missing_packages"] = ",".join(missing) or "none"
    detail = ", ".join(f"{key} {value}" for key, value in info.items())
    return detail, [info]


def step_gpu_tests(ctx: Context) -> tuple[str, list[dict]]:
    if ctx.device.type != "cuda":
        raise Skip("no CUDA device: the gpu-marked tests skip here")
    ctx.need(60)
    output = run_cli(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests", "-p", "no:cacheprovider"],
        ctx,
        timeout=120,
    )
    return last_line(output), []


def _peak_memory_mib(step: Callable[[], None], device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    return torch.cuda.max_memory_allocated(device) / 2**20


def _mode_unavailable(mode: Mode, device: torch.device) -> str | None:
    if mode.amp and device.type != "cuda":
        return "AMP runs on CUDA only (the engine trains fp32 on the CPU)"
    if mode.compile and device.type != "cuda":
        return "torch.compile is exercised on CUDA only (minutes on this CPU)"
    return None


def _throughput_of(name: str, ctx: Context) -> list[dict]:
    sizes = ctx.sizes
    args = argparse.Namespace(
        num_classes=51,
        batch_size=sizes.batch_size,
        clip_length=sizes.clip_length,
        clip_size=sizes.clip_size,
    )
    steps, rows, compile_seconds = {}, {}, {}
    for mode_name, mode in THROUGHPUT_MODES.items():
        rows[mode_name] = {"network": name, "mode": mode_name}
        if reason := _mode_unavailable(mode, ctx.device):
            rows[mode_name].update(status="skipped", detail=reason)
            continue
        try:
            step = make_step(name, mode, args, ctx.device)
            start = time.perf_counter()
            step()  # compiles a compiled model; warms cuDNN autotuning for the others
            compile_seconds[mode_name] = time.perf_counter() - start
            steps[mode_name] = step
        except Exception as error:  # one failed mode never hides the others
            rows[mode_name].update(status="failed", detail=last_line(f"{error!r}"))
    seconds = interleaved_median(steps, repeats=sizes.steps, warmup=1) if steps else {}
    baseline = sizes.batch_size / seconds["fp32"] if "fp32" in seconds else None
    for mode_name, median in seconds.items():
        speed = sizes.batch_size / median
        row = rows[mode_name]
        row.update(status="ok", clips_per_s=round(speed, 2))
        row["vs_fp32"] = round(speed / baseline, 2) if baseline else None
        row["peak_mib"] = _peak_memory_mib(steps[mode_name], ctx.device)
        if THROUGHPUT_MODES[mode_name].compile:
            row["compile_s"] = round(compile_seconds[mode_name], 1)
    ctx.step_rate[name] = max((row.get("clips_per_s", 0.0) for row in rows.values()), default=0.0)
    return list(rows.values())


def step_throughput(ctx: Context) -> tuple[str, list[dict]]:
    ctx.need(30 if not ctx.smoke else 5)
    rows = []
    for name in ctx.sizes.networks:
        rows += _throughput_of(name, ctx)
        torch.cuda.empty_cache() if ctx.device.type == "cuda" else None
    failed = [f"{r['network']} {r['mode']}" for r in rows if r["status"] == "failed"]
    if failed:
        raise RuntimeError(f"modes failed: {', '.join(failed)} (see the throughput table)")
    best = ", ".join(f"{name} {rate:.1f} clips/s" for name, rate in ctx.step_rate.items())
    return f"best step rate: {best}", rows


def _synthetic_set(ctx: Context) -> tuple[Path, Path]:
    """A small prepared set (frames.db per video, HMDB-style splits), written without ffmpeg."""
    if ctx.data is not None:
        return ctx.data
    from data.video.framestore import FrameDBWriter
    from data.video.synthetic import render_video, video_rng, write_splits

    classes, per_class = ("move_left", "move_right"), 6
    root, splits = ctx.work / "data", ctx.work / "splits"
    names: dict[str, list[str]] = {}
    for class_name in classes:
        names[class_name] = [f"{class_name}_{i:03d}.mp4" for i in range(per_class)]
        for index, video in enumerate(names[class_name]):
            rng = video_rng(0, class_name, index)
            frames = render_video(class_name, rng, frames=24, size=(160, 120))
            writer = FrameDBWriter(root / "jpg" / class_name / Path(video).stem)
            for frame in frames:
                writer.add("rgb", frame)
            writer.close(fps=12.0, width=160, height=120)
    write_splits(splits, names, test_fraction=0.34, seed=0)
    ctx.data = (root, splits)
    return ctx.data


def step_loader(ctx: Context) -> tuple[str, list[dict]]:
    ctx.need(20)
    workers = [str(w) for w in ctx.sizes.loader_workers]
    argv = [sys.executable, str(ROOT / "benchmarks" / "loader.py"), "--workers", *workers]
    if ctx.smoke:
        argv += ["--videos", "4", "--frames", "24", "--clips-per-video", "1", "--height", "64"]
        argv += ["--width", "86", "--crop", "32", "--clip-length", "4", "--batch-size", "2"]
    if ctx.device.type == "cuda":
        argv += ["--decode-device", "cuda"]
    output = run_cli(argv, ctx, timeout=90)
    rates = ", ".join(f"{name} {rate:.1f}" for name, rate in ctx.step_rate.items())
    table = [line for line in output.splitlines() if line.startswith("|")]
    return f"train-step clips/s for comparison: {rates or 'step 3 not run'}", [
        {"table": "\n".join(table)}
    ]


def _train_argv(ctx: Context, run_dir: Path, epochs: int) -> list[str]:
    root, splits = _synthetic_set(ctx)
    argv = hmdb(
        "train", "--data", str(root), "--splits", str(splits),
        "--network", ctx.sizes.train_network, "--clip-length", "8", "--clip-size", "64",
        "--short-side", "72", "--batch-size", "4", "--end-epoch", str(epochs),
        "--workers", "2", "--output-dir", str(run_dir), "--log-interval", "1",
        "--flip-prob", "0", "--no-tensorboard", "--no-plots",
    )  # fmt: skip
    if ctx.device.type == "cuda":
        argv += ["--amp", "--channels-last", "--device", "cuda"]
    else:
        argv += ["--device", "cpu"]
    return argv


def _kill_after_first_epoch(argv: list[str], run_dir: Path, timeout: float) -> None:
    """Start a training run and SIGKILL it once its first epoch is committed (latest.pth)."""
    latest = run_dir / "latest.pth"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as process:  # fmt: skip
        stop = time.monotonic() + timeout
        while not latest.exists() and process.poll() is None and time.monotonic() < stop:
            time.sleep(0.2)
        if process.poll() is not None:
            raise RuntimeError(f"training ended (exit {process.returncode}) before the kill")
        if not latest.exists():
            os.killpg(process.pid, signal.SIGKILL)
            raise RuntimeError(f"no latest.pth after {timeout:.0f} s")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def step_train_resume(ctx: Context) -> tuple[str, list[dict]]:
    ctx.need(40)
    run_dir = ctx.work / "run"
    argv = _train_argv(ctx, run_dir, epochs=2)
    _kill_after_first_epoch(argv, run_dir, timeout=min(120, ctx.left()))
    output = run_cli(argv, ctx, timeout=120)
    if "resum" not in output.lower():
        raise RuntimeError("the second run did not report resuming from latest.pth")
    root, splits = _synthetic_set(ctx)
    best = str(run_dir / "best.pth")
    device = ["--device", "cuda"] if ctx.device.type == "cuda" else ["--device", "cpu"]
    evaluation = run_cli(
        hmdb("evaluate", "--checkpoint", best, "--data", str(root), "--splits", str(splits),
             "--output-dir", str(run_dir / "eval"), "--workers", "2", *device),
        ctx, timeout=60,
    )  # fmt: skip
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text(encoding="utf-8"))
    ctx.onnx_path = ctx.work / "model.onnx"
    export = run_cli(hmdb("export", "--checkpoint", best, "--onnx", str(ctx.onnx_path)), ctx, 90)
    parity = [line for line in export.splitlines() if "parity" in line.lower()]
    detail = (
        f"killed after epoch 1, resumed to 2; video top-1 {metrics.get('video_top1', 0):.3f}; "
        f"{last_line(parity[-1]) if parity else last_line(export)}"
    )
    return detail, [{"evaluate": last_line(evaluation), "metrics": metrics}]


def step_ddp(ctx: Context) -> tuple[str, list[dict]]:
    ctx.need(30)
    # ActRec joins a process group only when the world size is above 1: nproc 1 checks the
    # torchrun launch, nproc 2 (two GPUs, or gloo on the CPU) the process group and DDP itself.
    counts = [1] if ctx.device.type == "cuda" else [2]
    if ctx.device.type == "cuda" and torch.cuda.device_count() >= 2:
        counts.append(2)
    backend = "nccl" if ctx.device.type == "cuda" else "gloo"
    rows = []
    for count in counts:
        run_dir = ctx.work / f"ddp{count}"
        argv = _train_argv(ctx, run_dir, epochs=1)[1:]  # torchrun runs the script itself
        output = run_cli(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             f"--nproc_per_node={count}", *argv],
            ctx, timeout=120,
        )  # fmt: skip
        if count > 1 and f"backend {backend}" not in output:
            raise RuntimeError(f"nproc {count}: the log does not show a {backend} process group")
        rows.append({"nproc": count, "backend": backend if count > 1 else "none", "ok": True})
    return f"{backend}: nproc_per_node {', '.join(map(str, counts))} trained one epoch", rows


def step_tensorrt(ctx: Context) -> tuple[str, list[dict]]:
    if ctx.device.type != "cuda":
        raise Skip("TensorRT needs an NVIDIA GPU")
    if importlib.util.find_spec("tensorrt") is None:
        raise Skip("the tensorrt package does not import here")
    if ctx.onnx_path is None or not ctx.onnx_path.exists():
        raise Skip("no ONNX file: step 5 did not export one")
    ctx.need(60)
    engine = ctx.work / "model.fp16.engine"
    output = run_cli(
        hmdb("trt-engine", "--onnx", str(ctx.onnx_path), "--engine", str(engine),
             "--precision", "fp16"),
        ctx, timeout=240,
    )  # fmt: skip
    return last_line(output), []


STEPS: dict[int, tuple[str, Callable[[Context], tuple[str, list[dict]]]]] = {
    1: ("environment", step_environment),
    2: ("pytest -m gpu", step_gpu_tests),
    3: ("train-step throughput", step_throughput),
    4: ("loader", step_loader),
    5: ("train, kill, resume, evaluate, export", step_train_resume),
    6: ("DDP (torchrun)", step_ddp),
    7: ("TensorRT FP16 engine", step_tensorrt),
}


def run_step(number: int, ctx: Context) -> StepResult:
    name, function = STEPS[number]
    start = time.monotonic()
    try:
        detail, rows = function(ctx)
        status = "ok"
    except Skip as reason:
        status, detail, rows = "skipped", str(reason), []
    except Exception as error:  # the check reports every failure and goes on
        status, detail, rows = "failed", last_line(str(error) or repr(error)), []
    result = StepResult(f"{number}. {name}", status, detail, time.monotonic() - start, rows)
    print(f"[{result.status:>7}] {result.step} ({result.seconds:.0f} s): {result.detail}")
    return result


# ----------------------------------------------------------------------------- report
def throughput_table(results: list[StepResult]) -> list[str]:
    rows = [row for r in results if r.step.startswith("3.") for row in r.rows]
    if not rows:
        return []
    lines = [
        "",
        f"{'network':<16}{'mode':<20}{'clips/s':>9}{'vs fp32':>9}{'peak MiB':>10}"
        f"{'compile s':>11}  note",
    ]
    for row in rows:
        speed = f"{row['clips_per_s']:.1f}" if "clips_per_s" in row else row["status"]
        ratio = f"{row['vs_fp32']:.2f}x" if row.get("vs_fp32") else "-"
        peak = f"{row['peak_mib']:.0f}" if row.get("peak_mib") else "-"
        compiled = f"{row['compile_s']:.1f}" if "compile_s" in row else "-"
        lines.append(
            f"{row['network']:<16}{row['mode']:<20}{speed:>9}{ratio:>9}{peak:>10}{compiled:>11}"
            f"  {row.get('detail', '')}"
        )
    return lines


def report(results: list[StepResult], ctx: Context, started: float) -> str:
    env = results[0].rows[0] if results and results[0].rows else {}
    title = (
        f"ActRec GPU check, {time.strftime('%Y-%m-%d')}, {env.get('gpu', ctx.device)}, "
        f"torch {torch.__version__}, {'CPU smoke' if ctx.smoke else 'full'}, "
        f"{time.monotonic() - started:.0f} s"
    )
    lines = [title, "", f"{'step':<42}{'status':<9}{'s':>5}  detail"]
    lines += [f"{r.step:<42}{r.status:<9}{r.seconds:>5.0f}  {r.detail}" for r in results]
    lines += throughput_table(results)
    for result in results:
        if result.step.startswith("4.") and result.rows:
            lines += ["", "loader (benchmarks/loader.py):", result.rows[0]["table"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    started = time.monotonic()
    reuse_large_buffers()  # as the training scripts run
    cuda = torch.cuda.is_available() and not args.cpu_smoke
    ctx = Context(
        device=torch.device("cuda" if cuda else "cpu"),
        sizes=GPU_SIZES if cuda else SMOKE_SIZES,
        out=args.out,
        work=Path(tempfile.mkdtemp(prefix="actrec_gpu_check_")),
        deadline=started + args.budget_s,
        smoke=not cuda,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    if cuda:
        torch.backends.cudnn.benchmark = True
    numbers = args.steps or sorted(STEPS)
    results = [run_step(number, ctx) for number in numbers if number in STEPS]
    text = report(results, ctx, started)
    print("\n" + text)
    (args.out / "gpu_check.txt").write_text(text, encoding="utf-8")
    payload = {"title": text.splitlines()[0], "steps": [asdict(r) for r in results]}
    (args.out / "gpu_check.json").write_text(json.dumps(payload, indent=2, default=str))
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
