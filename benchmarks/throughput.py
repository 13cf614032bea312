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
    python benchmarks/throughput.py --preset gpu-so400m --device cpu --concepts 1 --prompts 1 \\
        --methods 2 --reference-samples 1 --encoder-images 2 --warmup 0   # SO400M smoke test on CPU
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
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
    # The DreamBench++ shape cut by concepts (as --scale does): each reference keeps its
    # 9 x 7 = 63 outputs, so ours encodes 1.016 images per sample, as on the full workload.
    "cpu": dict(
        model=CPU_MODEL, device="cpu", concepts=2, prompts=9, methods=7,
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
    ("L40", 181.0),
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


def module_bytes(module) -> int:
    """Bytes held by a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in itertools.chain(module.parameters(), module.buffers()))


class PeakMemory:
    """Peak memory of one timed call.

    On CUDA: the model's own weights plus the peak of what the call allocated on top of
    what was already allocated (other models loaded in the process do not count), from
    ``torch.cuda.max_memory_allocated``. On the CPU, whose peak cannot be reset: the
    process's peak RSS so far (``resource.getrusage``), every loaded model included.
    """

    def __init__(self, device, own_bytes: int) -> None:
        self.device = device
        self.own_bytes = own_bytes

    def __enter__(self) -> "PeakMemory":
        import torch

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            self.before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.type == "cuda":
            extra = torch.cuda.max_memory_allocated(self.device) - self.before
            self.gib = (self.own_bytes + extra) / 2**30
            self.kind = "weights + peak extra torch.cuda.max_memory_allocated"
        else:
            self.gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
            self.kind = "peak RSS of the whole process so far"


@dataclass
class Phase:
    """One thing to time: ``run()`` does ``units`` of work (samples or images) once.

    ``reset()``, when given, runs untimed before each round (e.g. to empty caches).
    """

    name: str
    unit: str
    units: int
    run: Callable[[], Any]
    own_bytes: int
    reset: Optional[Callable[[], Any]] = None
    walls: list[float] = dataclasses.field(default_factory=list)
    cpus: list[float] = dataclasses.field(default_factory=list)
    memory_gib: float = 0.0
    memory_kind: str = ""
    result: Any = None

    def measure(self, device) -> None:
        """One timed round between device synchronisations: wall and process CPU seconds."""
        if self.reset is not None:
            self.reset()
        with PeakMemory(device, self.own_bytes) as memory:
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            self.result = self.run()
            synchronize(device)
            self.walls.append(time.perf_counter() - wall)
            self.cpus.append(time.process_time() - cpu)
        self.memory_gib, self.memory_kind = max(self.memory_gib, memory.gib), memory.kind

    def summary(self) -> dict[str, Any]:
        """Rates from the fastest and the median round, and CPU seconds per unit."""
        best, median = min(self.walls), statistics.median(self.walls)
        return {
            "unit": self.unit,
            "units": self.units,
            "rounds_wall_s": self.walls,
            "rounds_cpu_s": self.cpus,
            f"{self.unit}_per_s_best": self.units / best,
            f"{self.unit}_per_s_median": self.units / median,
            f"cpu_s_per_{self.unit[:-1]}": statistics.median(self.cpus) / self.units,
            "peak_memory_gib": self.memory_gib,
            "peak_memory_kind": self.memory_kind,
        }


def vision_flops(config, patches: int) -> float:
    """FLOPs of one image of ``patches`` tokens through the vision encoder, counted analytically.

    Per layer ``2 N (4 D^2 + 2 D M)`` (QKV and output projections, the MLP) plus attention
    ``4 N^2 D`` (scores and the weighted sum), plus the patch embedding ``2 N (3 P^2) D``.
    The pooling head (one query; 0.6% at SO400M size) and elementwise work are left out.
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
        return None, "unknown (not a GPU; pass --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops, f"dense bf16 peak of the {key} (device name {name!r})"
    return None, f"unknown device {name!r}; pass --peak-tflops"


def device_name(device) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo and the logical CPU count."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs"


def evenly_spaced(count: Optional[int], total: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them when count is None or >= total)."""
    if count is None or count >= total:
        return list(range(total))
    return sorted({int(i * total / count) for i in range(count)})


# --------------------------------------------------------------------------- the runs

def ours_phase(masc, workload: Workload, warmup: int, device) -> Phase:
    """``MaSC.score_many`` over every sample; each round starts from empty caches.

    The warm-up scores the first samples; its cached encodings and texts are cleared so
    every round encodes each distinct image and prompt itself (``masc.stats`` counts it).
    """
    if warmup:
        masc.score_many(workload.samples[:warmup])
        synchronize(device)

    def run():
        before = dataclasses.replace(masc.stats)
        scores = masc.score_many(workload.samples)
        work = {k: getattr(masc.stats, k) - getattr(before, k) for k in ("images_encoded", "texts_encoded")}
        return scores, work

    return Phase("ours", "samples", len(workload.samples), run, module_bytes(masc.model), reset=masc.clear_cache)


def reference_phase(name: str, reference, workload: Workload, indices: Sequence[int], warmup: int, device) -> Phase:
    """One ``reference.score`` per sample over ``indices``, reading its PNGs as a user would."""

    def score(index: int):
        sample = workload.samples[index]
        with Image.open(sample.ref_image) as ref_image, Image.open(sample.out_image) as out_image, \
                Image.open(sample.ref_mask) as ref_mask, Image.open(sample.out_mask) as out_mask:
            return reference.score(ref_image, np.asarray(ref_mask), out_image, np.asarray(out_mask),
                                   sample.prompt, object_name=sample.subject)

    for index in indices[:warmup]:
        score(index)
    synchronize(device)
    return Phase(name, "samples", len(indices), lambda: [score(i) for i in indices], module_bytes(reference.model))


def encoder_phase(masc, images: Sequence[str], batch_size: int, warmup: int, device) -> tuple[Phase, float]:
    """The vision encoder alone on pre-processed, device-resident pixel batches.

    Images are preprocessed as ours does (NaFlex at ``masc.max_num_patches``, untimed) and
    batched ``batch_size`` at a time in the given order, each batch padded to its longest
    image; only the forwards are timed (after one warm-up batch unless ``warmup`` is 0), one
    after another on the calling thread. The forward is the one ours uses: at batch 1 with
    ``masc.one_image_forward`` (the CPU default) that one-image forward and the pooling
    head's global pool, otherwise ``model.vision_model`` (which runs the head too). Returns the phase and the analytic FLOPs of one pass over the
    images (real patches only, padding not counted).
    """
    import torch

    from pytest_masc.metric import functional

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
    one_image = masc.one_image_forward if batch_size == 1 else None

    def forward(pixel_values, attention, shapes):
        if one_image is not None:  # as ours: tokens, then the head's keys/values and global pool
            tokens = one_image(pixel_values[0], tuple(int(x) for x in shapes[0]))
            keys_values = functional.pool_keys_values(vision.head, tokens[None])
            return functional.attention_pool_projected(vision.head, keys_values, attention[:, :len(tokens)] == 0)
        return vision(pixel_values=pixel_values, pixel_attention_mask=attention, spatial_shapes=shapes)

    def run():
        with torch.inference_mode():
            for batch in batches:
                forward(*batch)
        return {"padding_fraction": 1 - sum(len(p) for p in patches) / sum(b[0].shape[0] * b[0].shape[1] for b in batches),
                "mean_patches": sum(len(p) for p in patches) / len(patches),
                "forward": "one-image forward" if one_image is not None else "Transformers vision_model"}

    if warmup:
        with torch.inference_mode():  # warm-up on the first batch
            forward(*batches[0])
        synchronize(device)
    flops = sum(vision_flops(vision.config, len(p)) for p in patches)
    return Phase("encoder_only", "images", len(images), run, module_bytes(vision)), flops


def compare(ours: Sequence[Any], reference: Sequence[Any], atol: float) -> dict[str, Any]:
    """Largest |ours - reference| for CP and PF over paired samples; NaN must match NaN."""
    report: dict[str, Any] = {"atol": atol, "samples": len(reference)}
    ok = True
    for name, ours_name, ref_name in (("cp", "concept", "cp"), ("pf", "prompt", "pf")):
        a = np.array([getattr(s, ours_name) for s in ours], dtype=np.float64)
        b = np.array([getattr(r, ref_name) for r in reference], dtype=np.float64)
        nan_mismatches = int((np.isnan(a) != np.isnan(b)).sum())
        both = ~np.isnan(a) & ~np.isnan(b)
        worst = float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0
        report[f"{name}_max_abs_diff"] = worst
        report[f"{name}_nan_mismatches"] = nan_mismatches
        ok = ok and nan_mismatches == 0 and worst <= atol
    report["ok"] = bool(ok)
    return report


# --------------------------------------------------------------------------- main

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags; those left unset take the preset's values."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="model size, device and workload defaults (default: cpu)")
    parser.add_argument("--model", type=Path, help="an existing SigLIP2 NaFlex checkpoint directory instead of random weights")
    parser.add_argument("--device", help="torch device (default: the preset's; cuda falls back to cpu when absent)")
    parser.add_argument("--dtype", help="our model dtype (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--batch-size", type=int, help="images per vision forward, ours and encoder-only (default: ours)")
    parser.add_argument("--num-workers", type=int, help="our image-reading threads (default: ours)")
    parser.add_argument("--encode-streams", type=int, help="our side-by-side vision forwards (default: ours)")
    parser.add_argument("--transformers-forward", action="store_true",
                        help="ours (and encoder-only) use Transformers' padded vision forward even for batches "
                             "of one, instead of the one-image forward that is the CPU default")
    parser.add_argument("--max-patches", type=int, default=1024, help="NaFlex patch budget (default 1024)")
    parser.add_argument("--concepts", type=int, help="concepts (DreamBench++: 150)")
    parser.add_argument("--prompts", type=int, help="prompts per concept (9)")
    parser.add_argument("--methods", type=int, help="methods, i.e. outputs per (concept, prompt) (7)")
    parser.add_argument("--scale", type=float, help="keep about this fraction of the preset's samples (fewer concepts first)")
    parser.add_argument("--reference-samples", type=int,
                        help="time the reference on this many evenly spaced samples (default: preset's; cpu: all)")
    parser.add_argument("--reference-bf16", action="store_true", help="also time the reference with its model in bfloat16")
    parser.add_argument("--skip-reference", action="store_true",
                        help="time ours and the encoder only (as does --reference-samples 0)")
    parser.add_argument("--encoder-images", type=int,
                        help="evenly spaced distinct images for the encoder-only run (default: preset's; cpu: all)")
    parser.add_argument("--warmup", type=int, help="warm-up samples before timing (default: preset's)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="timed rounds, each running every phase in turn (ours, encoder, reference); "
                             "rates use the fastest round, speed-ups the median of per-round ratios")
    parser.add_argument("--peak-tflops", type=float, help="device bf16 peak for the utilisation figure")
    parser.add_argument("--atol", type=float, help="score tolerance (default 1e-4 when both run float32, else 2e-2)")
    parser.add_argument("--workdir", type=Path,
                        help="keep the checkpoint and PNGs here and reuse them (default: a temp dir, removed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the images")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build or load the model, write the workload, time the runs, print and save the results."""
    args = parse_args(argv)
    preset = PRESETS[args.preset]

    import torch

    from pytest_masc.metric.loading import resolve_device, resolve_dtype

    wanted_device = args.device or preset["device"]
    if wanted_device.startswith("cuda") and not torch.cuda.is_available() and not args.device:
        print("CUDA is not available: running the preset on the CPU", file=sys.stderr)
        wanted_device = "cpu"
    device = resolve_device(wanted_device)
    dtype = resolve_dtype(args.dtype, device)
    concepts, prompts, methods = workload_shape(preset, args)
    warmup = args.warmup if args.warmup is not None else preset["warmup"]
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="masc-throughput-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        if args.model:
            model_dir = naflex_named(args.model, workdir)
        else:
            model_dir = build_checkpoint_in_subprocess(
                workdir / f"random-siglip2-{args.preset}-naflex", preset["model"], args.seed
            )
        log(f"checkpoint {model_dir} ready in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        workload = make_workload(
            workdir / f"workload-{concepts}x{prompts}x{methods}-s{args.seed}", concepts, prompts, methods, args.seed
        )
        log(f"{len(workload.samples)} samples, {len(workload.distinct_images)} images ready in "
            f"{time.perf_counter() - started:.1f} s")
        results = measure(args, preset, device, dtype, model_dir, workload, warmup)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0 if all(results[k]["agreement"]["ok"] for k in ("reference_fp32", "reference_bf16") if k in results) else 1


def log(message: str) -> None:
    """Progress on stderr, with a timestamp."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(args, preset, device, dtype, model_dir: Path, workload: Workload, warmup: int) -> dict[str, Any]:
    """Load both scorers, warm them up, time ``args.rounds`` rounds and gather the results."""
    import torch

    from pytest_masc import MaSC

    masc = MaSC.from_pretrained(
        model_dir, device=device, dtype=dtype, max_num_patches=args.max_patches,
        batch_size=args.batch_size, num_workers=args.num_workers, encode_streams=args.encode_streams,
        one_image_forward=False if args.transformers_forward else None, local_files_only=True,
    )
    vision_config = masc.model.vision_model.config
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_start": os.getloadavg(),
        "model": str(args.model) if args.model else f"random weights, preset {args.preset}",
        "vision_config": {k: getattr(vision_config, k) for k in
                          ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size")},
        "ours_config": {**masc.describe(), "num_workers": masc.num_workers},
        "workload": workload.describe(),
        "rounds": args.rounds,
    }

    log("warming up ours and preparing the encoder-only batches")
    phases = [ours_phase(masc, workload, warmup, device)]
    encoder_count = args.encoder_images or preset["encoder_images"]
    encoder_images = [workload.distinct_images[i] for i in evenly_spaced(encoder_count, len(workload.distinct_images))]
    encoder, encoder_flops = encoder_phase(masc, encoder_images, masc.batch_size, warmup, device)
    phases.append(encoder)

    references = []
    if not args.skip_reference and args.reference_samples != 0:
        import masc as reference_package

        results["reference_package"] = reference_package.__version__
        count = args.reference_samples if args.reference_samples is not None else preset["reference_samples"]
        indices = evenly_spaced(count, len(workload.samples))
        runs = [("reference_fp32", None)] + ([("reference_bf16", torch.bfloat16)] if args.reference_bf16 else [])
        for name, cast in runs:
            log(f"loading and warming up {name}")
            reference = reference_package.MaSC(
                model_id=str(model_dir), device=str(device), naflex_max_patches=args.max_patches, dtype=cast
            )
            phases.append(reference_phase(name, reference, workload, indices, min(warmup, 2), device))
            references.append((name, cast, indices))

    for round_ in range(args.rounds):
        for phase in phases:
            log(f"round {round_ + 1}/{args.rounds}: timing {phase.name} ({phase.units} {phase.unit})")
            phase.measure(device)
    results["load_average_end"] = os.getloadavg()

    ours = phases[0]
    scores, work = ours.result
    results["ours"] = {
        **ours.summary(), **work,
        "images_encoded_per_sample": work["images_encoded"] / ours.units,  # the reference: 2
        "images_per_s_best": work["images_encoded"] / min(ours.walls),
    }
    results["encoder_only"] = {**encoder.summary(), **encoder.result, "flops_per_pass": encoder_flops}
    flops_per_image = encoder_flops / encoder.units
    peak, peak_source = device_peak_tflops(device, args.peak_tflops)
    results["peak_bf16_tflops"] = {"value": peak, "source": peak_source}
    for name, images_per_s in (("encoder_only", results["encoder_only"]["images_per_s_best"]),
                               ("ours", results["ours"]["images_per_s_best"])):
        tflops = flops_per_image * images_per_s / 1e12
        results[name]["vision_tflops_per_s"] = tflops
        results[name]["percent_of_peak"] = 100 * tflops / peak if peak else None
    results["ours"]["percent_of_encoder_only"] = (
        100 * results["ours"]["images_per_s_best"] / results["encoder_only"]["images_per_s_best"]
    )

    for phase, (name, cast, indices) in zip(phases[2:], references, strict=True):
        both_fp32 = cast is None and dtype == torch.float32
        atol = args.atol if args.atol is not None else (1e-4 if both_fp32 else 2e-2)
        summary = phase.summary()
        # Each round times ours and the reference minutes apart at most: their ratio is paired.
        paired = [(phase.walls[r] / phase.units) / (ours.walls[r] / ours.units) for r in range(args.rounds)]
        results[name] = {
            **summary,
            "dtype": "bfloat16" if cast is not None else "float32",
            "agreement": compare([scores[i] for i in indices], phase.result, atol),
            "ours_speedup_best": results["ours"]["samples_per_s_best"] / summary["samples_per_s_best"],
            "ours_speedup_median_paired": statistics.median(paired),
            "ours_speedup_cpu_time": summary["cpu_s_per_sample"] / results["ours"]["cpu_s_per_sample"],
        }
    return results


def report(results: dict[str, Any]) -> None:
    """Print the measurements as a short table."""
    ours, encoder, w = results["ours"], results["encoder_only"], results["workload"]
    config = results["ours_config"]
    print(f"device: {results['device_name']} ({results['device']}), torch {results['torch']}, "
          f"{results['torch_threads']} threads, load average {results['load_average_start'][0]:.2f} -> "
          f"{results['load_average_end'][0]:.2f}")
    print(f"model: {results['model']}, vision {results['vision_config']}; ours: {config['dtype']}, "
          f"batch {config['batch_size']}, {config['num_workers']} workers, {config['max_num_patches']} patches")
    print(f"workload: {w['concepts']} concepts x {w['prompts']} prompts x {w['methods']} methods = {w['samples']} samples, "
          f"{w['distinct_references']} references, {w['distinct_outputs']} outputs, {w['distinct_prompts']} prompts; "
          f"{results['rounds']} round(s)")
    print(f"{'ours':16} {ours['samples_per_s_best']:9.3f} samples/s (median {ours['samples_per_s_median']:.3f}; "
          f"{ours['cpu_s_per_sample']:.3f} CPU-s/sample; {ours['images_encoded']} images "
          f"({ours['images_encoded_per_sample']:.3f} per sample, the reference 2), {ours['texts_encoded']} texts "
          f"encoded) peak {ours['peak_memory_gib']:.2f} GiB ({ours['peak_memory_kind']})")
    for name in ("reference_fp32", "reference_bf16"):
        if name not in results:
            continue
        run, agreement = results[name], results[name]["agreement"]
        print(f"{name:16} {run['samples_per_s_best']:9.3f} samples/s (median {run['samples_per_s_median']:.3f}; "
              f"{run['cpu_s_per_sample']:.3f} CPU-s/sample; {run['units']} samples) "
              f"peak {run['peak_memory_gib']:.2f} GiB")
        print(f"{'':16} ours is {run['ours_speedup_best']:.2f}x faster (best rounds; median of paired rounds "
              f"{run['ours_speedup_median_paired']:.2f}x; CPU time {run['ours_speedup_cpu_time']:.2f}x)")
        print(f"{'':16} scores on {agreement['samples']} samples: max |dCP| {agreement['cp_max_abs_diff']:.2e}, "
              f"max |dPF| {agreement['pf_max_abs_diff']:.2e}, NaN mismatches "
              f"{agreement['cp_nan_mismatches'] + agreement['pf_nan_mismatches']} (atol {agreement['atol']:g}): "
              f"{'OK' if agreement['ok'] else 'MISMATCH'}")
    peak = results["peak_bf16_tflops"]["value"]
    print(f"{'encoder only':16} {encoder['images_per_s_best']:9.3f} images/s ({encoder['forward']}, one at a time; "
          f"{encoder['units']} images, mean "
          f"{encoder['mean_patches']:.0f} patches, {100 * encoder['padding_fraction']:.1f}% padding): "
          f"{encoder['vision_tflops_per_s']:.3f} TFLOP/s"
          + (f" = {encoder['percent_of_peak']:.1f}% of the {peak:g} TFLOP/s bf16 peak" if peak else " (no peak known)"))
    print(f"{'ours end-to-end':16} {ours['images_per_s_best']:9.3f} images/s = {ours['percent_of_encoder_only']:.1f}% of "
          f"the encoder-only rate; {ours['vision_tflops_per_s']:.3f} TFLOP/s in the vision encoder"
          + (f" = {ours['percent_of_peak']:.1f}% of peak" if peak else ""))


if __name__ == "__main__":
    sys.exit(main())
