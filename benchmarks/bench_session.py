"""napari-sam2's Session against Meta's SAM2VideoPredictor, in one process, on the same GPU and weights.

Run on the GPU machine from the repository root, with Meta's code prepared in .ref/
(../shared/tools/reference/prepare.sh) and carried along:

    PYTHONPATH=src:.ref python3 benchmarks/bench_session.py            # env knobs below

The microscopist's case: a 16-bit grayscale stack (SIZE² px, 100 blurred nuclei moving on a noisy background),
read by ours as the array it is and by the reference as the same frames saved as JPEG (scaled to 8 bits,
3 channels, as its loader needs); object j clicked on frame j mod 4 (objects prompted on different frames),
propagation from frame 0; **our defaults** (hole filling on, encoder blocks, CUDA graphs) against the
reference's (its hole filling needs a CUDA extension that is not built there, so it runs without: that favours
the reference); bf16 autocast for both; every frame's masks brought to the host by both.
Env: MODELS (tiny,large), OBJS (1,5,20,100), NFRAMES (120), REF_FRAMES_MANY (32: frames the reference runs at
100 objects), MEMORY (300,3000: frames of ours-only runs with 1 object, tiny, for peak device memory), SIZE (1024),
CLICK_PRESENT (1,20: objects prompted on the clicked frame, one click-latency measurement each), DEVICE_GIB
(unset: the whole GPU; a number: a ballast tensor first takes all but that much device memory, as on a smaller
GPU — e.g. 24 for a workstation card; both implementations then see that little free memory),
OUT (where JSON goes). Random weights (speed does not depend on weight values), copied from the reference into
ours. Each timed pass of ours follows a 24-frame warm-up pass in the same session (graph capture, attention
backend timing); the reference gets an 8-frame warm-up per model. Prints one JSON line per measurement and a
table at the end.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / ".ref")]

from napari_sam2.engine import Session  # noqa: E402
from napari_sam2.engine.device import DeviceMemoryError  # noqa: E402
from napari_sam2.model import build_sam2  # noqa: E402

MODELS = os.environ.get("MODELS", "tiny,large").split(",")
OBJS = [int(x) for x in os.environ.get("OBJS", "1,5,20,100").split(",") if x]  # empty: click latency only
NFRAMES = int(os.environ.get("NFRAMES", 120))
MEMORY = [int(x) for x in os.environ.get("MEMORY", "300,3000").split(",") if x]
REF_FRAMES_MANY = int(os.environ.get("REF_FRAMES_MANY", 32))
SIZE = int(os.environ.get("SIZE", 1024))
CLICK_PRESENT = [int(x) for x in os.environ.get("CLICK_PRESENT", "1,20").split(",") if x]  # objects on its frame
DEVICE_GIB = float(os.environ["DEVICE_GIB"]) if os.environ.get("DEVICE_GIB") else None
REF_CONFIG = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
RESULTS: list[dict] = []


class SyntheticStack:
    """A lazy (N, SIZE, SIZE) uint16 stack: 100 blurred nuclei on a noisy background; frame i is the base image
    rolled by 2i px (so object j is at ``click(j, i)`` on frame i)."""

    def __init__(self, n: int):
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        self.centres = rng.uniform(0.05, 0.95, (100, 2)) * SIZE
        base = np.zeros((SIZE, SIZE), np.float32)
        radius = SIZE / 80
        for cy, cx in self.centres:
            base += np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)))
        noise = rng.normal(0, 0.05, (SIZE, SIZE)).astype(np.float32)
        self.base = (800 + 20000 * np.clip(base + noise, 0, None)).astype(np.uint16)
        self.shape, self.dtype = (n, SIZE, SIZE), np.dtype(np.uint16)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, i):
        return np.roll(self.base, (2 * int(i), 2 * int(i)), axis=(0, 1))

    def write_jpegs(self, folder: Path) -> None:
        from PIL import Image

        folder.mkdir(parents=True, exist_ok=True)
        high = float(np.percentile(self.base, 99.5))
        for i in range(len(self)):
            grey = np.clip(self[i].astype(np.float32) * (255.0 / high), 0, 255).astype(np.uint8)
            Image.fromarray(np.repeat(grey[..., None], 3, axis=-1)).save(folder / f"{i:05d}.jpg", quality=95)

    def click(self, j: int, frame: int = 0) -> tuple[float, float]:
        cy, cx = self.centres[j % 100]
        return float((cy + 2 * frame) % SIZE), float((cx + 2 * frame) % SIZE)


def prompt_frame(j: int) -> int:
    return j % 4


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * page)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def record(**row) -> None:
    RESULTS.append(row)
    print(json.dumps(row), flush=True)


def record_pass(impl: str, label: str, nobj: int, nframes: int, seconds: float, peak_rss: int) -> None:
    """One propagation pass: frames/s, object-frames/s, peak device memory (since the last reset) and host RSS."""
    record(impl=impl, model=label, objects=nobj, frames=nframes, fps=round(nframes / seconds, 2),
           obj_fps=round(nobj * nframes / seconds, 1), peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
           rss_gib=round(peak_rss / 2**30, 2))


def sync():
    torch.cuda.synchronize()


def build_pair(name: str):
    from refload import build_ref

    cfg = ROOT / ".ref" / "sam2" / "configs" / "sam2.1" / f"sam2.1_hiera_{REF_CONFIG[name]}.yaml"
    ref = build_ref(str(cfg), device="cuda")
    ref.fill_hole_area = 0
    ours = build_sam2(f"sam2.1_hiera_{name}", image_size=SIZE)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours.cuda().eval()


def autocast():
    return torch.autocast("cuda", dtype=torch.bfloat16)


def add_prompts_ours(session, stack, nobj: int) -> None:
    for j in range(nobj):
        f = prompt_frame(j)
        session.add_points(f, j + 1, [stack.click(j, f)], [1])


def bench_ours(model, stack, nobj: int, nframes: int, label: str, warmup: int = 24) -> None:
    session = Session(model, stack, device="cuda")
    if warmup:  # graph capture and attention-backend timing happen once per memory layout
        add_prompts_ours(session, stack, nobj)
        for r in session.propagate(start=0, max_frames=warmup):
            _ = r.masks
        session.reset()
        session.features.clear()
    add_prompts_ours(session, stack, nobj)
    sync()
    torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        for r in session.propagate(start=0, max_frames=nframes - 1):
            _ = r.masks  # (objects, H, W) bool on the host
        sync()
        dt = time.perf_counter() - t0
    record_pass("ours", label, nobj, nframes, dt, rss.peak)
    graphs = session.tracker.graphs
    if graphs is not None:
        record(impl="ours", model=label, objects=nobj, metric="graphs", captures=graphs.captures,
               replays=graphs.replays, static_steps=graphs.static_steps)
    session.close()


def open_time(model, stack, label: str) -> None:
    """Seconds from opening the first session of the process to its compute thread being free: the encoder's
    compile when it opens (cold: nothing in the disk cache on a fresh machine)."""
    t0 = time.perf_counter()
    session = Session(model, stack, device="cuda")
    session.wait_until_ready()
    runner = session.features.run_block
    record(impl="ours", model=label, metric="open_s", seconds=round(time.perf_counter() - t0, 1),
           compiled_kinds=len(runner.compiled_kinds) if runner is not None else 0,
           compile_failed=bool(runner is not None and runner.failed))
    session.close()


def bench_ref(ref, folder: Path, stack, nobj: int, nframes: int, label: str) -> None:
    torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss, autocast(), torch.inference_mode():
        state = ref.init_state(video_path=str(folder))
        for j in range(nobj):
            f = prompt_frame(j)
            cy, cx = stack.click(j, f)
            ref.add_new_points_or_box(state, f, j + 1, points=np.array([[cx, cy]], np.float32),
                                      labels=np.array([1], np.int32))
        sync()
        t0 = time.perf_counter()
        for _, _, masks in ref.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=nframes - 1):
            _ = (masks > 0).cpu()
        sync()
        dt = time.perf_counter() - t0
    record_pass("reference", label, nobj, nframes, dt, rss.peak)
    del state
    torch.cuda.empty_cache()


def click_latency(ref, ours, folder: Path, stack, label: str, clicks: int = 20, *, ours_only: bool = False,
                  present: int = 1) -> None:
    """Median / p90 ms of a click on object 1 on a cached frame (5), its result on the host, with ``present``
    objects prompted on that frame (each click's result holds all of them, for both implementations)."""
    session = Session(ours, stack, device="cuda")
    for j in range(present):  # caches frame 5's features
        session.add_points(5, j + 1, [stack.click(j, 5)], [1])
    times = []
    for _ in range(clicks):
        sync()
        t0 = time.perf_counter()
        result = session.add_points(5, 1, [stack.click(0, 5)], [1], clear=True)
        _ = result.masks  # labels on the host, as the viewer needs them
        times.append(time.perf_counter() - t0)
    record(impl="ours", model=label, metric="click_ms", objects=present,
           median=round(1000 * float(np.median(times)), 1), p90=round(1000 * float(np.percentile(times, 90)), 1))
    session.close()
    if ours_only:
        return
    with autocast(), torch.inference_mode():
        state = ref.init_state(video_path=str(folder))
        for j in range(present):
            ref.add_new_points_or_box(state, 5, j + 1, points=np.array([stack.click(j, 5)[::-1]], np.float32),
                                      labels=np.array([1], np.int32))
        times = []
        for _ in range(clicks):
            sync()
            t0 = time.perf_counter()
            _, _, masks = ref.add_new_points_or_box(state, 5, 1, points=np.array([stack.click(0, 5)[::-1]], np.float32),
                                                    labels=np.array([1], np.int32))
            _ = (masks > 0).cpu()
            times.append(time.perf_counter() - t0)
    record(impl="reference", model=label, metric="click_ms", objects=present,
           median=round(1000 * float(np.median(times)), 1), p90=round(1000 * float(np.percentile(times, 90)), 1))
    del state


def survive_oom(impl: str, label: str, nobj: int, bench, *args) -> None:
    """Run one timed pass; running out of device memory is recorded as its result (the run goes on)."""
    try:
        bench(*args)
    except (torch.cuda.OutOfMemoryError, DeviceMemoryError) as error:
        record(impl=impl, model=label, objects=nobj, metric="out_of_memory", error=str(error).split(".")[0])
        print(f"{impl} {label} {nobj} objects: OUT OF DEVICE MEMORY", flush=True)
        torch.cuda.empty_cache()


def smaller_gpu(gib: float) -> torch.Tensor:
    """Take all but ``gib`` GiB of the device's free memory with one tensor, so that both implementations run
    as on a GPU of about that size (torch.cuda.mem_get_info then reports that little free)."""
    free, _ = torch.cuda.mem_get_info()
    ballast = torch.empty(max(0, free - int(gib * 2**30)), dtype=torch.uint8, device="cuda")
    record(metric="device_limit", gib=gib, free_gib=round(torch.cuda.mem_get_info()[0] / 2**30, 2))
    return ballast


def main() -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    ballast = smaller_gpu(DEVICE_GIB) if DEVICE_GIB else None  # noqa: F841 (held until the end)
    work = Path(tempfile.mkdtemp())
    short = SyntheticStack(NFRAMES)
    t0 = time.time()
    short.write_jpegs(work / "short")
    print(f"wrote {NFRAMES} JPEGs in {time.time() - t0:.0f} s", flush=True)
    for name in MODELS:
        ref, ours = build_pair(name)
        open_time(ours, short, name)
        bench_ours(ours, short, 1, 8, name + "-warmup", warmup=0)
        bench_ref(ref, work / "short", short, 1, 8, name + "-warmup")
        if OBJS:  # clicks before the many-object passes too (the table's click follows them)
            click_latency(ref, ours, work / "short", short, name + "-first", ours_only=True)
        for nobj in OBJS:
            survive_oom("ours", name, nobj, bench_ours, ours, short, nobj, NFRAMES, name)
            survive_oom("reference", name, nobj, bench_ref, ref, work / "short", short, nobj,
                        NFRAMES if nobj <= 20 else REF_FRAMES_MANY, name)
        for present in CLICK_PRESENT:
            click_latency(ref, ours, work / "short", short, name, present=present)
        if name == MODELS[0]:
            for n in MEMORY:
                bench_ours(ours, SyntheticStack(n), 1, n, name + "-memory")
        del ref, ours
        torch.cuda.empty_cache()
    print_table()
    out = os.environ.get("OUT")
    if out:
        Path(out, "bench_session.json").write_text(json.dumps({
            "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": RESULTS}, indent=1))


def print_table() -> None:
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, {SIZE} px, bf16")
    print(f"{'model':>6} {'objs':>4} {'frames':>6} | {'ours fps':>8} {'ref fps':>8} {'speedup':>7} | "
          f"{'ours GiB':>8} {'ref GiB':>8} | {'ours RSS':>8} {'ref RSS':>8}")
    rows = [r for r in RESULTS if "fps" in r and not r["model"].endswith(("warmup", "memory"))]
    for r in rows:
        if r["impl"] != "ours":
            continue
        ref = next((x for x in rows if x["impl"] == "reference" and x["model"] == r["model"]
                    and x["objects"] == r["objects"] and (x["frames"] == r["frames"] or r["objects"] > 20)), None)
        ref_fps = ref["fps"] if ref else float("nan")
        print(f"{r['model']:>6} {r['objects']:>4} {r['frames']:>6} | {r['fps']:>8} {ref_fps:>8} "
              f"{r['fps'] / ref_fps if ref else float('nan'):>6.1f}x | {r['peak_gib']:>8} "
              f"{ref['peak_gib'] if ref else '-':>8} | {r['rss_gib']:>8} {ref['rss_gib'] if ref else '-':>8}")
    for r in RESULTS:
        if r.get("model", "").endswith("memory") and "fps" in r:
            print(f"ours, {r['model']}, {r['frames']} frames: {r['fps']} fps, peak device memory {r['peak_gib']} GiB")
    for r in RESULTS:
        if r.get("metric") == "click_ms":
            print(f"click-to-mask {r['impl']:>9} {r['model']}, {r.get('objects', 1)} object(s) on the frame: "
                  f"median {r['median']} ms, p90 {r['p90']} ms")


if __name__ == "__main__":
    main()
