#!/usr/bin/env python
"""Throughput of ``MaSC.score_many`` against the reference ``masc`` package, on one device.

The workload has the DreamBench++ shape: ``concepts x prompts x methods`` samples
(150 x 9 x 7 = 9,450 in full) with one reference image per concept, one distinct output
image per sample and one prompt per (concept, prompt) pair, at mixed aspect ratios, written
as PNG files (images plus rectangle / ellipse masks). The model has random weights: speed
does not depend on their values, so the real SO400M architecture is built from its config.

Measured, in one process on one device, each after a warm-up and with device
synchronisation:

* ours: ``MaSC.score_many`` over every sample (reading, preprocessing, text and vision
  encoding and scoring included);
* the reference: one ``masc.MaSC.score`` per sample (reading the PNGs included) on an
  evenly spaced subset, in float32 and, with ``--reference-bf16``, with its model cast to
  bfloat16; its scores are checked against ours on the same samples;
* the vision encoder alone: pre-processed pixel batches of the same distinct images through
  ``model.vision_model``, the ceiling for ours, with its achieved TFLOP/s counted
  analytically from the config.

Examples::

    python benchmarks/throughput.py --preset cpu --json cpu.json
    python benchmarks/throughput.py --preset gpu-so400m --reference-bf16 --json gpu.json
    python benchmarks/throughput.py --preset gpu-so400m --device cpu --scale 0.002 \\
        --reference-samples 1 --encoder-images 2 --warmup 1   # SO400M smoke test on CPU
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

if __package__ in (None, ""):  # run as a script: make the repository's package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# --------------------------------------------------------------------------- configuration

#: The google/siglip2-so400m-patch16-naflex architecture (both towers share these sizes).
SO400M = dict(
    hidden_size=1152,
    num_hidden_layers=27,
    num_attention_heads=16,
    intermediate_size=4304,
    patch_size=16,
    num_patches=256,
    vocab_size=256_000,
)

#: A mid-size model that runs on any CPU in seconds per image at 1024 patches.
CPU_MODEL = dict(
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=1024,
    patch_size=16,
    num_patches=256,
)

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": dict(
        model=CPU_MODEL, device="cpu", concepts=6, prompts=3, methods=4,
        reference_samples=None, encoder_images=None, warmup=4,
    ),
    "gpu-so400m": dict(
        model=SO400M, device="cuda", concepts=150, prompts=9, methods=7,
        reference_samples=200, encoder_images=512, warmup=64,
    ),
}

#: Image sizes (width, height) of the workload, cycled over concepts, prompts and methods.
SIZES = [
    (512, 512), (768, 512), (512, 768), (1024, 576), (576, 1024),
    (1024, 1024), (640, 480), (480, 640), (896, 640), (768, 768),
]

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown"]
NOUNS = [
    "dog", "cat", "backpack", "teapot", "sneaker", "robot toy", "vase", "teddy bear",
    "guitar", "candle", "mug", "clock", "plush rabbit", "bicycle", "lamp",
]
TEMPLATES = [
    "a photo of a {} on the beach",
    "a {} in the snow",
    "a {} on a wooden table in a kitchen",
    "a {} floating in space among the stars",
    "a watercolor painting of a {}",
    "a {} in the middle of a busy city street",
    "a {} on top of a mountain at sunset",
    "a {} in a forest surrounded by mushrooms",
    "a {} underwater with colorful fish",
]

#: Dense bfloat16 tensor-core peaks (TFLOP/s, no sparsity) by a substring of the device name.
PEAK_BF16_TFLOPS = [
    ("H200", 989.4),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM ("NVIDIA H100 80GB HBM3")
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("A10G", 70.0),
    ("L4", 121.0),
]


# --------------------------------------------------------------------------- workload

@dataclass
class Workload:
    """The samples, as file paths, and the counts that define the workload's shape."""

    root: Path
    concepts: int
    prompts: int
    methods: int
    samples: list  # pytest_masc.Sample with path inputs
    references: list[str]
    outputs: list[str]
    distinct_prompts: int

    @property
    def distinct_images(self) -> list[str]:
        """References first, then outputs: every image path once."""
        return self.references + self.outputs

    def describe(self) -> dict[str, Any]:
        """Counts for reports."""
        return {
            "concepts": self.concepts,
            "prompts": self.prompts,
            "methods": self.methods,
            "samples": len(self.samples),
            "distinct_references": len(self.references),
            "distinct_outputs": len(self.outputs),
            "distinct_prompts": self.distinct_prompts,
            "sizes_wxh": [f"{w}x{h}" for w, h in SIZES],
        }


def subject_name(concept: int) -> str:
    """A distinct subject name per concept: "red dog", "blue dog" ..., then numbered."""
    base = f"{COLORS[concept % len(COLORS)]} {NOUNS[(concept // len(COLORS)) % len(NOUNS)]}"
    rounds = concept // (len(COLORS) * len(NOUNS))
    return base if rounds == 0 else f"{base} {rounds}"


def render(image_path: str, mask_path: str, size: tuple[int, int], seed: int) -> None:
    """Write one random-ish RGB image and its object mask (a rectangle or an ellipse) as PNGs.

    The image is a smooth colour field with blocky texture and an object of another colour,
    so it has real structure, decodes like a photo-sized PNG and compresses reasonably.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    field_ = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((width, height), Image.BILINEAR)
    texture = Image.fromarray(rng.integers(0, 48, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8))
    texture = texture.resize((width, height), Image.NEAREST)
    pixels = np.asarray(field_, dtype=np.int16) + np.asarray(texture, dtype=np.int16) - 24

    mask = Image.new("L", (width, height), 0)
    box_w, box_h = (rng.uniform(0.2, 0.6) * width, rng.uniform(0.2, 0.6) * height)
    left, top = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
    box = [left, top, left + box_w, top + box_h]
    draw = ImageDraw.Draw(mask)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=255)
    inside = np.asarray(mask) > 0
    pixels[inside] = pixels[inside] // 3 + rng.integers(0, 170, 3, dtype=np.int16)

    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(image_path, compress_level=1)
    mask.save(mask_path, compress_level=1)


def _render_job(job: tuple[str, str, tuple[int, int], int]) -> None:
    render(*job)


def make_workload(
    root: Path, concepts: int, prompts: int, methods: int, seed: int = 0, processes: Optional[int] = None
) -> Workload:
    """Write the workload's PNGs under ``root`` (reusing them if a matching manifest is there).

    Sample order is method-major (as an evaluation over several methods is usually listed),
    so the same reference recurs across the list, not only in runs.
    """
    from pytest_masc import Sample

    root.mkdir(parents=True, exist_ok=True)
    manifest = {"concepts": concepts, "prompts": prompts, "methods": methods, "seed": seed, "sizes": SIZES}
    manifest_path = root / "manifest.json"
    reuse = manifest_path.exists() and json.loads(manifest_path.read_text()) == json.loads(json.dumps(manifest))
    if not reuse and manifest_path.exists():
        manifest_path.unlink()
    (root / "refs").mkdir(exist_ok=True)
    (root / "outs").mkdir(exist_ok=True)

    jobs = []
    references = []
    for concept in range(concepts):
        image, mask = root / "refs" / f"c{concept:03d}.png", root / "refs" / f"c{concept:03d}_mask.png"
        references.append(str(image))
        jobs.append((str(image), str(mask), SIZES[concept % len(SIZES)], seed * 1_000_003 + concept))
    samples, outputs, texts = [], [], set()
    for method in range(methods):
        for concept in range(concepts):
            subject = subject_name(concept)
            for prompt in range(prompts):
                stem = f"m{method}_c{concept:03d}_p{prompt}"
                image, mask = root / "outs" / f"{stem}.png", root / "outs" / f"{stem}_mask.png"
                size = SIZES[(concept + 3 * prompt + 7 * method) % len(SIZES)]
                index = (method * concepts + concept) * prompts + prompt
                jobs.append((str(image), str(mask), size, seed * 1_000_003 + 10_000 + index))
                outputs.append(str(image))
                text = TEMPLATES[prompt % len(TEMPLATES)].format(subject)
                if prompt >= len(TEMPLATES):
                    text += f", variation {prompt // len(TEMPLATES)}"
                texts.add(text)
                samples.append(Sample(references[concept], str(root / "refs" / f"c{concept:03d}_mask.png"),
                                      str(image), str(mask), text, subject))
    if not reuse:
        processes = processes or os.cpu_count() or 1
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            list(pool.map(_render_job, jobs, chunksize=max(1, len(jobs) // (8 * processes))))
        manifest_path.write_text(json.dumps(manifest))
    return Workload(root, concepts, prompts, methods, samples, references, outputs, len(texts))


def workload_shape(preset: dict[str, Any], args: argparse.Namespace) -> tuple[int, int, int]:
    """Concepts, prompts and methods from the preset, ``--scale`` and explicit overrides.

    ``--scale s`` keeps about ``s`` of the samples: it shrinks the number of concepts first
    (each concept keeps all its prompts and methods, so references are reused as in the full
    run), then, below one concept, the prompts, then the methods.
    """
    concepts, prompts, methods = preset["concepts"], preset["prompts"], preset["methods"]
    if args.scale is not None:
        if args.scale <= 0:
            raise SystemExit("--scale must be positive")
        wanted = concepts * args.scale
        if wanted >= 1:
            concepts = round(wanted)
        else:
            concepts, wanted = 1, wanted * prompts
            if wanted >= 1:
                prompts = round(wanted)
            else:
                prompts = 1
                methods = max(1, round(wanted * methods))
    concepts = args.concepts or concepts
    prompts = args.prompts or prompts
    methods = args.methods or methods
    return concepts, prompts, methods


# --------------------------------------------------------------------------- checkpoint

def build_checkpoint(path: Path, model: dict[str, Any], seed: int = 0) -> Path:
    """Write a random-weight SigLIP2 NaFlex checkpoint with the given architecture.

    Uses :func:`pytest_masc.testing.tiny_checkpoint` (random weights, NaFlex image
    processor, a small tokenizer whose ids all fit the model's vocabulary). Reused when
    ``path`` already holds one written with the same arguments.
    """
    from pytest_masc.testing import tiny_checkpoint

    marker = path / "benchmark-architecture.json"
    wanted = json.dumps({"model": model, "seed": seed}, sort_keys=True)
    if marker.exists() and marker.read_text() == wanted and (path / "config.json").exists():
        return path
    tiny_checkpoint(path, seed=seed, **model)
    marker.write_text(wanted)
    return path


def build_checkpoint_in_subprocess(path: Path, model: dict[str, Any], seed: int = 0) -> Path:
    """:func:`build_checkpoint` in a child process, so its memory stays out of our peak RSS."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(build_checkpoint, path, model, seed).result()


def naflex_named(model_dir: Path, workdir: Path) -> Path:
    """``model_dir``, or a link to it whose name says ``naflex`` (the reference needs the word)."""
    if "naflex" in str(model_dir).lower():
        return model_dir
    link = workdir / f"{model_dir.name}-naflex"
    if not link.exists():
        link.symlink_to(model_dir.resolve(), target_is_directory=True)
    return link


# --------------------------------------------------------------------------- measuring

def synchronize(device) -> None:
    """Wait for queued device work (CUDA); a no-op on the CPU."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device) -> None:
    """Start a new peak-memory window (CUDA only: the CPU's peak RSS cannot be reset)."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device) -> dict[str, Any]:
    """Peak device memory since :func:`reset_peak` (CUDA), or the process's peak RSS (CPU)."""
    import torch

    if device.type == "cuda":
        return {"kind": "torch.cuda.max_memory_allocated", "gib": torch.cuda.max_memory_allocated(device) / 2**30}
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"kind": "peak RSS of the process so far", "gib": rss_kib / 2**20}


def timed(device, function: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``function`` between two device synchronisations; return (seconds, its result)."""
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result


def vision_flops(config, patches: int) -> float:
    """FLOPs of one image of ``patches`` tokens through the vision encoder, counted analytically.

    Per layer ``2 N (4 D^2 + 2 D M)`` (QKV and output projections, the MLP) plus attention
    ``4 N^2 D`` (scores and the weighted sum), plus the patch embedding ``2 N (3 P^2) D``.
    The pooling head (one query) and the elementwise work are left out (< 1%).
    """
    n, d, m = patches, config.hidden_size, config.intermediate_size
    per_layer = 2 * n * (4 * d * d + 2 * d * m) + 4 * n * n * d
    embedding = 2 * n * (config.num_channels * config.patch_size**2) * d
    return config.num_hidden_layers * per_layer + embedding


def device_peak_tflops(device, override: Optional[float]) -> tuple[Optional[float], str]:
    """The dense bf16 peak to compare against: ``--peak-tflops``, else known GPUs by name."""
    import torch

    if override:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, "unknown (not a GPU)"
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops, f"dense bf16 peak of {key} (from the device name {name!r})"
    return None, f"unknown device {name!r}; pass --peak-tflops"


def device_name(device) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs)"


def evenly_spaced(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them if count >= total)."""
    if count is None or count >= total:
        return list(range(total))
    return sorted({int(i * total / count) for i in range(count)})


# --------------------------------------------------------------------------- the three runs

def run_ours(masc, workload: Workload, warmup: int, device) -> dict[str, Any]:
    """Time ``MaSC.score_many`` over every sample, after a warm-up on the first samples.

    The warm-up's cached encodings and texts are cleared, so the timed run encodes every
    distinct image and prompt itself.
    """
    if warmup:
        masc.score_many(workload.samples[:warmup])
        synchronize(device)
    masc.clear_cache()
    before = dataclasses.replace(masc.stats)
    reset_peak(device)
    seconds, scores = timed(device, lambda: masc.score_many(workload.samples))
    after = masc.stats
    work = {name: getattr(after, name) - getattr(before, name) for name in ("images_encoded", "texts_encoded")}
    return {
        "seconds": seconds,
        "samples": len(workload.samples),
        "samples_per_s": len(workload.samples) / seconds,
        "images_per_s": work["images_encoded"] / seconds,
        **work,
        "peak_memory": peak_memory(device),
        "scores": scores,
    }


def run_reference(reference, workload: Workload, indices: Sequence[int], warmup: int, device) -> dict[str, Any]:
    """Time one ``reference.score`` per sample (PNG reading included) over ``indices``."""
    import torch

    def score(index: int):
        sample = workload.samples[index]
        with Image.open(sample.ref_image) as ref_image, Image.open(sample.out_image) as out_image:
            ref_mask = np.asarray(Image.open(sample.ref_mask))
            out_mask = np.asarray(Image.open(sample.out_mask))
            return reference.score(ref_image, ref_mask, out_image, out_mask, sample.prompt, object_name=sample.subject)

    for index in indices[:warmup]:
        score(index)
    reset_peak(device)
    seconds, results = timed(device, lambda: [score(i) for i in indices])
    return {
        "dtype": str(next(reference.model.parameters()).dtype).removeprefix("torch."),
        "seconds": seconds,
        "samples": len(indices),
        "samples_per_s": len(indices) / seconds,
        "peak_memory": peak_memory(device),
        "results": results,
        "torch_threads": torch.get_num_threads(),
    }


def run_encoder(masc, images: Sequence[str], batch_size: int, device) -> dict[str, Any]:
    """Time the vision encoder alone on pre-processed, device-resident pixel batches.

    Images are preprocessed exactly as ours does (NaFlex, ``masc.max_num_patches``) and
    batched ``batch_size`` at a time, each batch padded to its longest image, in the same
    order ours encodes them; only the ``model.vision_model`` forwards are timed.
    """
    import torch

    patches, grids = [], []
    for path in images:
        with Image.open(path) as image:
            features = masc.image_processor(
                images=[image.convert("RGB")], max_num_patches=masc.max_num_patches, return_tensors="np"
            )
        count = int(features["pixel_attention_mask"][0].sum())
        patches.append(torch.from_numpy(np.ascontiguousarray(features["pixel_values"][0, :count])))
        grids.append([int(x) for x in features["spatial_shapes"][0]])

    batches = []
    for start in range(0, len(images), batch_size):
        chunk = patches[start:start + batch_size]
        lengths = torch.tensor([len(p) for p in chunk])
        pixel_values = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
        attention = (torch.arange(pixel_values.shape[1])[None] < lengths[:, None]).long()
        shapes = torch.tensor(grids[start:start + batch_size], dtype=torch.long)
        batches.append((pixel_values.to(device, masc.dtype), attention.to(device), shapes.to(device)))
    vision = masc.model.vision_model

    def forward_all():
        for pixel_values, attention, shapes in batches:
            vision(pixel_values=pixel_values, pixel_attention_mask=attention, spatial_shapes=shapes)

    with torch.inference_mode():
        pixel_values, attention, shapes = batches[0]
        vision(pixel_values=pixel_values, pixel_attention_mask=attention, spatial_shapes=shapes)  # warm-up
        reset_peak(device)
        seconds, _ = timed(device, forward_all)
    flops = sum(vision_flops(vision.config, len(p)) for p in patches)
    padded = sum(b[0].shape[0] * b[0].shape[1] for b in batches)
    return {
        "seconds": seconds,
        "images": len(images),
        "images_per_s": len(images) / seconds,
        "mean_patches": sum(len(p) for p in patches) / len(patches),
        "padding_fraction": 1 - sum(len(p) for p in patches) / padded,
        "flops": flops,
        "tflops_per_s": flops / seconds / 1e12,
        "peak_memory": peak_memory(device),
    }


def compare(ours: Sequence[Any], reference: Sequence[Any], atol: float) -> dict[str, Any]:
    """Largest |ours - reference| for CP and PF over paired samples; NaN must match NaN."""
    report: dict[str, Any] = {"atol": atol, "samples": len(reference)}
    ok = True
    for name, ours_name, ref_name in (("cp", "concept", "cp"), ("pf", "prompt", "pf")):
        a = np.array([getattr(s, ours_name) for s in ours], dtype=np.float64)
        b = np.array([getattr(r, ref_name) for r in reference], dtype=np.float64)
        nan_mismatch = int((np.isnan(a) != np.isnan(b)).sum())
        both = ~np.isnan(a) & ~np.isnan(b)
        worst = float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0
        report[f"{name}_max_abs_diff"] = worst
        report[f"{name}_nan_mismatches"] = nan_mismatch
        ok &= nan_mismatch == 0 and worst <= atol
    report["ok"] = bool(ok)
    return report


# --------------------------------------------------------------------------- main

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags; unset ones take the preset's values."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="model size, device and workload defaults (default: cpu)")
    parser.add_argument("--model", type=Path, help="an existing SigLIP2 NaFlex checkpoint directory instead of a random one")
    parser.add_argument("--device", help="torch device (default: the preset's; cuda falls back to cpu when absent)")
    parser.add_argument("--dtype", help="our model dtype (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--batch-size", type=int, help="images per vision forward for ours and the encoder-only run")
    parser.add_argument("--num-workers", type=int, help="our image-reading threads")
    parser.add_argument("--max-patches", type=int, default=1024, help="NaFlex patch budget (default 1024)")
    parser.add_argument("--concepts", type=int, help="concepts (150 in DreamBench++)")
    parser.add_argument("--prompts", type=int, help="prompts per concept (9)")
    parser.add_argument("--methods", type=int, help="methods, i.e. outputs per (concept, prompt) (7)")
    parser.add_argument("--scale", type=float, help="keep about this fraction of the preset's samples (concepts first)")
    parser.add_argument("--reference-samples", type=int,
                        help="time the reference on this many evenly spaced samples (default: preset; cpu: all)")
    parser.add_argument("--reference-bf16", action="store_true", help="also time the reference with its model in bfloat16")
    parser.add_argument("--skip-reference", action="store_true", help="time ours and the encoder only")
    parser.add_argument("--encoder-images", type=int,
                        help="distinct images for the encoder-only run (default: preset; cpu: all)")
    parser.add_argument("--warmup", type=int, help="warm-up samples before each timed run")
    parser.add_argument("--peak-tflops", type=float, help="device bf16 peak for the utilisation figure")
    parser.add_argument("--atol", type=float, help="score tolerance (default 1e-4 when both run float32, else 2e-2)")
    parser.add_argument("--workdir", type=Path, help="keep the checkpoint and PNGs here and reuse them (default: a temp dir, removed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args(argv)


def fmt_memory(memory: dict[str, Any]) -> str:
    """``1.23 GiB (kind)``."""
    return f"{memory['gib']:.2f} GiB ({memory['kind']})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build or load the model, write the workload, time the runs, print and save the results."""
    args = parse_args(argv)
    preset = PRESETS[args.preset]

    import torch

    from pytest_masc import MaSC
    from pytest_masc.scorer import resolve_device, resolve_dtype

    wanted_device = args.device or preset["device"]
    if wanted_device.startswith("cuda") and not torch.cuda.is_available() and not args.device:
        print("CUDA is not available: running the preset on the CPU", file=sys.stderr)
        wanted_device = "cpu"
    device = resolve_device(wanted_device)
    dtype = resolve_dtype(args.dtype, device)
    concepts, prompts, methods = workload_shape(preset, args)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="masc-throughput-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        if args.model:
            model_dir = naflex_named(args.model, workdir)
            architecture = "given checkpoint"
        else:
            model_dir = build_checkpoint_in_subprocess(workdir / f"random-siglip2-{args.preset}-naflex", preset["model"], args.seed)
            architecture = preset["model"]
        print(f"checkpoint {model_dir} ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        started = time.perf_counter()
        workload = make_workload(workdir / f"workload-{concepts}x{prompts}x{methods}-s{args.seed}", concepts, prompts, methods, args.seed)
        print(f"workload {workload.describe()} ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        results: dict[str, Any] = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "device": str(device),
            "device_name": device_name(device),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "model": str(args.model) if args.model else "random weights",
            "architecture": architecture,
            "max_patches": args.max_patches,
            "workload": workload.describe(),
        }

        masc = MaSC.from_pretrained(
            model_dir, device=device, dtype=dtype, max_num_patches=args.max_patches,
            batch_size=args.batch_size, num_workers=args.num_workers, local_files_only=True,
        )
        results["ours_config"] = {**masc.describe(), "num_workers": masc.num_workers}
        vision_config = masc.model.vision_model.config
        results["vision_config"] = {k: getattr(vision_config, k) for k in
                                    ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size")}
        warmup = args.warmup if args.warmup is not None else preset["warmup"]

        print("timing ours ...", file=sys.stderr)
        ours = run_ours(masc, workload, warmup, device)
        scores = ours.pop("scores")
        results["ours"] = ours

        encoder_count = args.encoder_images or preset["encoder_images"] or len(workload.distinct_images)
        encoder_images = [workload.distinct_images[i] for i in evenly_spaced(encoder_count, len(workload.distinct_images))]
        print(f"timing the vision encoder alone on {len(encoder_images)} images ...", file=sys.stderr)
        encoder = run_encoder(masc, encoder_images, masc.batch_size, device)
        results["encoder_only"] = encoder
        # Our distinct images at the encoder's rate; FLOPs of our images estimated from the encoder's sample.
        ours["percent_of_encoder_only"] = 100 * ours["images_per_s"] / encoder["images_per_s"]
        ours["tflops_per_s"] = encoder["flops"] / encoder["images"] * ours["images_per_s"] / 1e12
        peak, peak_source = device_peak_tflops(device, args.peak_tflops)
        results["peak_bf16_tflops"] = {"value": peak, "source": peak_source}
        if peak:
            encoder["percent_of_peak"] = 100 * encoder["tflops_per_s"] / peak
            ours["percent_of_peak"] = 100 * ours["tflops_per_s"] / peak
        del masc
        gc.collect()

        if not args.skip_reference:
            import masc as reference_package

            count = args.reference_samples if args.reference_samples is not None else preset["reference_samples"]
            indices = evenly_spaced(count, len(workload.samples)) if count != 0 else []
            reference = reference_package.MaSC(model_id=str(model_dir), device=str(device), naflex_max_patches=args.max_patches)
            runs = [("reference_fp32", None)] + ([("reference_bf16", torch.bfloat16)] if args.reference_bf16 else [])
            for name, cast in runs:
                if cast is not None:
                    reference.model.to(dtype=cast)
                print(f"timing the reference ({name}) on {len(indices)} samples ...", file=sys.stderr)
                run = run_reference(reference, workload, indices, min(2, max(1, warmup)), device)
                both_fp32 = cast is None and dtype == torch.float32
                atol = args.atol if args.atol is not None else (1e-4 if both_fp32 else 2e-2)
                run["agreement"] = compare([scores[i] for i in indices], run.pop("results"), atol)
                run["ours_speedup"] = ours["samples_per_s"] / run["samples_per_s"]
                results[name] = run
            results["reference_package"] = reference_package.__version__
            del reference
            gc.collect()
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    agreements = [results[k]["agreement"]["ok"] for k in ("reference_fp32", "reference_bf16") if k in results]
    return 0 if all(agreements) else 1


def report(results: dict[str, Any]) -> None:
    """Print the measurements as a short table."""
    ours, encoder = results["ours"], results["encoder_only"]
    w = results["workload"]
    print(f"device: {results['device_name']} ({results['device']}), torch {results['torch']}, "
          f"{results['torch_threads']} threads")
    print(f"model: {results['model']}, vision {results['vision_config']}, ours dtype {results['ours_config']['dtype']}, "
          f"batch {results['ours_config']['batch_size']}, workers {results['ours_config']['num_workers']}, "
          f"max patches {results['max_patches']}")
    print(f"workload: {w['concepts']} concepts x {w['prompts']} prompts x {w['methods']} methods = {w['samples']} samples, "
          f"{w['distinct_references']} references, {w['distinct_outputs']} outputs, {w['distinct_prompts']} prompts")
    print(f"ours:            {ours['samples_per_s']:9.2f} samples/s  ({ours['samples']} samples in {ours['seconds']:.1f} s, "
          f"{ours['images_encoded']} images, {ours['texts_encoded']} texts encoded; {ours['images_per_s']:.2f} images/s) "
          f"peak {fmt_memory(ours['peak_memory'])}")
    for name in ("reference_fp32", "reference_bf16"):
        if name in results:
            run, agreement = results[name], results[name]["agreement"]
            print(f"{name + ':':16} {run['samples_per_s']:9.2f} samples/s  ({run['samples']} samples in {run['seconds']:.1f} s) "
                  f"peak {fmt_memory(run['peak_memory'])}")
            print(f"    ours / {name}: {run['ours_speedup']:.2f}x; scores on {agreement['samples']} samples: "
                  f"max |dCP| {agreement['cp_max_abs_diff']:.2e}, max |dPF| {agreement['pf_max_abs_diff']:.2e}, "
                  f"NaN mismatches {agreement['cp_nan_mismatches'] + agreement['pf_nan_mismatches']} "
                  f"(atol {agreement['atol']:g}): {'OK' if agreement['ok'] else 'MISMATCH'}")
    peak = results["peak_bf16_tflops"]["value"]
    print(f"encoder only:    {encoder['images_per_s']:9.2f} images/s  ({encoder['images']} images, mean {encoder['mean_patches']:.0f} "
          f"patches, {100 * encoder['padding_fraction']:.1f}% padding) {encoder['tflops_per_s']:.3f} TFLOP/s"
          + (f" = {encoder['percent_of_peak']:.1f}% of {peak:g}" if peak else " (no peak known)")
          + f"; peak {fmt_memory(encoder['peak_memory'])}")
    print(f"ours end-to-end: {ours['percent_of_encoder_only']:.1f}% of the encoder-only image rate, "
          f"{ours['tflops_per_s']:.3f} TFLOP/s in the vision encoder"
          + (f" = {ours['percent_of_peak']:.1f}% of peak" if peak else ""))


if __name__ == "__main__":
    sys.exit(main())
