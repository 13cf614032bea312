"""Write the demo gate suite ``suites/demo/``: procedurally drawn images with exact masks.

Two concepts, a toy robot and a teapot, are drawn from rectangles, ellipses and polygons
(no anti-aliasing) straight onto a background and, with the same shapes, onto a mask: the
masks are exact by construction. References show each object on a plain background; the
generated images ("outputs") show it scaled and shifted on four drawn backgrounds (beach,
snow, forest, city) at three sizes. Everything is seeded: a rerun writes the same bytes.

Usage: ``python scripts/make_demo_suite.py [--out DIR]`` (default: ``suites/demo`` next to
this script's parent). Needs numpy and Pillow only. Writes ``refs/*.png``, ``out/*.png``,
``masc_demo.toml``, ``masc_demo_csv.toml`` and ``cases.csv``; ``README.md`` is kept by hand.
"""
from __future__ import annotations

import argparse
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "suites" / "demo"
Box = tuple[float, float, float, float]
RGB = tuple[int, int, int]


# ------------------------------------------------------------------------- drawing


class Painter:
    """Draws each shape on an RGB image and, in white, on its ``L`` mask: exact masks.

    Coordinates are in object units; ``(x, y)`` is the object's top-left corner in pixels and
    ``scale`` the pixels per unit. Shapes are drawn without anti-aliasing.
    """

    def __init__(self, image: Image.Image, mask: Image.Image, x: int, y: int, scale: float) -> None:
        self.image = ImageDraw.Draw(image)
        self.mask = ImageDraw.Draw(mask)
        self.x, self.y, self.scale = x, y, scale

    def _point(self, u: float, v: float) -> tuple[int, int]:
        return (round(self.x + u * self.scale), round(self.y + v * self.scale))

    def _box(self, box: Box) -> list[tuple[int, int]]:
        return [self._point(box[0], box[1]), self._point(box[2], box[3])]

    def rect(self, box: Box, fill: RGB) -> None:
        self.image.rectangle(self._box(box), fill=fill)
        self.mask.rectangle(self._box(box), fill=255)

    def ellipse(self, box: Box, fill: RGB) -> None:
        self.image.ellipse(self._box(box), fill=fill)
        self.mask.ellipse(self._box(box), fill=255)

    def circle(self, u: float, v: float, radius: float, fill: RGB) -> None:
        self.ellipse((u - radius, v - radius, u + radius, v + radius), fill)

    def ring(self, box: Box, width: float, fill: RGB) -> None:
        pixels = max(1, round(width * self.scale))
        self.image.ellipse(self._box(box), outline=fill, width=pixels)
        self.mask.ellipse(self._box(box), outline=255, width=pixels)

    def polygon(self, points: Sequence[tuple[float, float]], fill: RGB) -> None:
        corners = [self._point(u, v) for u, v in points]
        self.image.polygon(corners, fill=fill)
        self.mask.polygon(corners, fill=255)


@dataclass(frozen=True)
class Shape:
    """An object drawn in a ``width`` x ``height`` unit box."""

    width: float
    height: float
    draw: Callable[[Painter], None]


def _draw_robot(p: Painter) -> None:
    """A toy robot: antenna, blue head with yellow eyes, orange body with a checkered panel."""
    steel, orange, dark = (70, 110, 180), (230, 120, 40), (60, 60, 70)
    p.rect((4.8, 0.8, 5.2, 2.6), dark)                       # antenna stalk
    p.circle(5.0, 0.8, 0.7, (220, 40, 40))                   # antenna ball
    p.rect((2.5, 2.5, 7.5, 6.0), steel)                      # head
    for u in (3.9, 6.1):
        p.circle(u, 4.1, 0.7, (255, 210, 40))                # eyes
        p.circle(u, 4.1, 0.3, dark)
    p.rect((3.8, 5.1, 6.2, 5.5), dark)                       # mouth
    p.rect((4.3, 6.0, 5.7, 6.6), (150, 150, 160))            # neck
    p.rect((1.5, 6.6, 8.5, 12.0), orange)                    # body
    for row in range(3):                                      # checkered chest panel
        for col in range(4):
            colour = (20, 20, 20) if (row + col) % 2 else (250, 250, 250)
            p.rect((3.0 + col, 7.5 + row, 4.0 + col, 8.5 + row), colour)
    p.rect((0.0, 7.0, 1.5, 11.0), steel)                     # arms
    p.rect((8.5, 7.0, 10.0, 11.0), steel)
    p.circle(0.75, 11.5, 0.75, dark)                          # hands
    p.circle(9.25, 11.5, 0.75, dark)
    p.rect((2.5, 12.0, 4.3, 15.2), dark)                     # legs
    p.rect((5.7, 12.0, 7.5, 15.2), dark)
    p.rect((2.0, 15.2, 4.6, 16.0), steel)                    # feet
    p.rect((5.4, 15.2, 8.0, 16.0), steel)


def _draw_teapot(p: Painter) -> None:
    """A teapot: teal ellipse body with white dots, ring handle (its hole is background), spout."""
    teal, dark_teal = (40, 150, 150), (20, 100, 105)
    p.ring((11.5, 3.5, 16.0, 9.0), 1.1, (150, 40, 40))        # handle
    p.polygon([(4.5, 6.5), (0.0, 2.6), (0.9, 2.0), (5.5, 4.8)], dark_teal)  # spout
    p.ellipse((3.0, 3.0, 13.0, 11.0), teal)                   # body
    for u, v in ((6.0, 6.0), (10.0, 6.0), (8.0, 8.5), (5.8, 8.8), (10.2, 8.8), (8.0, 5.0)):
        p.circle(u, v, 0.6, (250, 250, 245))                   # dots
    p.ellipse((5.0, 1.8, 11.0, 4.0), dark_teal)                # lid
    p.circle(8.0, 1.3, 0.7, (230, 180, 40))                    # knob
    p.rect((5.0, 10.4, 11.0, 11.2), (30, 60, 65))              # base


SHAPES = {
    "robot": Shape(10.0, 16.0, _draw_robot),
    "teapot": Shape(16.0, 11.2, _draw_teapot),
}


# ------------------------------------------------------------------------- backgrounds


def _rng(*parts: object) -> np.random.Generator:
    """A generator seeded from its name (crc32, stable across runs, unlike ``hash``)."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def _vertical_gradient(height: int, width: int, top: RGB, bottom: RGB) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height, dtype=np.float64)[:, None, None]
    colours = (1 - t) * np.array(top, float) + t * np.array(bottom, float)
    return np.broadcast_to(colours, (height, width, 3)).round().astype(np.uint8)


def _beach(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    pixels = np.empty((height, width, 3), np.uint8)
    horizon, shore = int(height * 0.40), int(height * 0.62)
    pixels[:horizon] = _vertical_gradient(horizon, width, (110, 170, 235), (190, 225, 250))
    pixels[horizon:shore] = (30, 110, 170)
    pixels[horizon + 3:shore:6] = (90, 160, 210)                 # wave lines
    pixels[shore:] = _vertical_gradient(height - shore, width, (235, 210, 160), (215, 185, 130))
    for _ in range(width * height // 900):                       # pebbles
        y, x = rng.integers(shore, height - 2), rng.integers(0, width - 2)
        pixels[y:y + 2, x:x + 2] = (170, 140, 100)
    return pixels


def _snow(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    ground = int(height * 0.55)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:ground] = _vertical_gradient(ground, width, (60, 110, 190), (175, 205, 240))
    pixels[ground:] = _vertical_gradient(height - ground, width, (250, 252, 255), (215, 228, 245))
    for _ in range(width * height // 600):                       # snowflakes
        y, x = rng.integers(0, ground - 2), rng.integers(0, width - 2)
        pixels[y:y + 2, x:x + 2] = (255, 255, 255)
    return pixels


def _forest(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    pixels = np.empty((height, width, 3), np.uint8)
    greens = [(34, 90, 40), (50, 120, 55), (25, 70, 35), (70, 140, 60), (40, 105, 45)]
    x = 0
    while x < width:
        stripe = int(rng.integers(8, 22))
        pixels[:, x:x + stripe] = greens[int(rng.integers(0, len(greens)))]
        x += stripe
    floor = int(height * 0.8)
    pixels[floor:] = _vertical_gradient(height - floor, width, (80, 60, 35), (55, 40, 25))
    return pixels


def _city(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    pixels = _vertical_gradient(height, width, (185, 200, 220), (225, 230, 238)).copy()
    street = int(height * 0.85)
    x = 0
    while x < width:
        block = int(rng.integers(28, 60))
        top = int(rng.integers(int(height * 0.15), int(height * 0.5)))
        grey = int(rng.integers(90, 150))
        pixels[top:street, x:x + block - 3] = (grey, grey, grey + 8)
        lit = (235, 215, 120) if rng.random() < 0.5 else (60, 70, 85)
        for wy in range(top + 6, street - 8, 12):                 # window grid
            pixels[wy:wy + 5, x + 5:x + block - 8:9] = lit
            pixels[wy:wy + 5, x + 6:x + block - 8:9] = lit
        x += block
    pixels[street:] = (70, 70, 75)
    return pixels


BACKGROUNDS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "beach": _beach,
    "snow": _snow,
    "forest": _forest,
    "city": _city,
}


def render_background(kind: str, width: int, height: int) -> Image.Image:
    """One drawn background: ``beach``, ``snow``, ``forest`` or ``city``, seeded by kind and size."""
    return Image.fromarray(BACKGROUNDS[kind](width, height, _rng(kind, width, height)), "RGB")


def render(
    shape: str,
    background: Image.Image,
    *,
    height_fraction: float,
    centre: tuple[float, float],
) -> tuple[Image.Image, Image.Image]:
    """The object drawn on a copy of ``background``, and its exact ``L`` mask (0 / 255).

    ``height_fraction`` is the object's height over the image's; ``centre`` its centre as
    fractions of the image's width and height.
    """
    object_shape = SHAPES[shape]
    image = background.copy()
    mask = Image.new("L", image.size, 0)
    scale = height_fraction * image.height / object_shape.height
    x = round(centre[0] * image.width - object_shape.width * scale / 2)
    y = round(centre[1] * image.height - object_shape.height * scale / 2)
    object_shape.draw(Painter(image, mask, x, y, scale))
    return image, mask


# ------------------------------------------------------------------------- the suite


@dataclass(frozen=True)
class Reference:
    """A reference: the object on a plain background."""

    file: str
    shape: str
    size: tuple[int, int]
    colour: RGB
    height_fraction: float
    centre: tuple[float, float]


@dataclass(frozen=True)
class Output:
    """A generated image of a case: the object, scaled and shifted, on a drawn background."""

    case_id: Optional[str]  # None: the suite leaves the id to its default
    shape: str
    prompt: str
    background: str
    size: tuple[int, int]
    height_fraction: float
    centre: tuple[float, float]

    @property
    def file(self) -> str:
        return f"{self.shape}_{self.background}"


REFERENCES = (
    Reference("robot", "robot", (256, 256), (236, 236, 236), 0.75, (0.5, 0.5)),
    Reference("robot_side", "robot", (256, 192), (242, 232, 214), 0.70, (0.42, 0.52)),
    Reference("teapot", "teapot", (256, 256), (236, 236, 236), 0.50, (0.5, 0.5)),
)

OUTPUTS = (
    Output("robot-beach", "robot", "a toy robot on the beach", "beach", (256, 256), 0.45, (0.40, 0.62)),
    Output("robot-snow", "robot", "a toy robot in the snow", "snow", (320, 192), 0.55, (0.62, 0.60)),
    Output("robot-city", "robot", "a toy robot in the city", "city", (192, 320), 0.35, (0.50, 0.70)),
    Output("teapot-forest", "teapot", "a teapot in the forest", "forest", (256, 256), 0.30, (0.55, 0.70)),
    Output("teapot-beach", "teapot", "a teapot on the beach", "beach", (320, 192), 0.40, (0.35, 0.70)),
    Output(None, "teapot", "a teapot in the snow", "snow", (192, 320), 0.22, (0.50, 0.72)),
)

#: The gates and concepts both demo suites share.
GATES_AND_CONCEPTS = '''\
min_concept = 0.5
min_prompt_margin = -0.05

[concepts.robot]
subject = "toy robot"
reference = ["refs/robot.png", "refs/robot_side.png"]
reference_mask = ["refs/robot_mask.png", "refs/robot_side_mask.png"]

[concepts.teapot]
subject = "teapot"
reference = "refs/teapot.png"
reference_mask = "refs/teapot_mask.png"
'''

TOML_SUITE = '''\
# Demo gate suite: two drawn concepts, six cases. Generated by scripts/make_demo_suite.py;
# see README.md. Paths are relative to this file.
#
# The gates are set for the real model (google/siglip2-so400m-patch16-naflex): a case
# fails when its concept preservation (CP) is below 0.5, or when its prompt following on
# the background is more than 0.05 below that of its best distractor prompt. Scores of
# the tiny random-weight test checkpoint are meaningless; do not read them against these.

[suite]
name = "demo"
''' + GATES_AND_CONCEPTS + '''
[[cases]]
id = "robot-beach"
concept = "robot"
prompt = "a toy robot on the beach"
image = "out/robot_beach.png"
mask = "out/robot_beach_mask.png"

[[cases]]
id = "robot-snow"
concept = "robot"
prompt = "a toy robot in the snow"
image = "out/robot_snow.png"
mask = "out/robot_snow_mask.png"
min_concept = 0.6                 # per-case override of the suite's min_concept

[[cases]]
id = "robot-city"
concept = "robot"
prompt = "a toy robot in the city"
image = "out/robot_city.png"
mask = "out/robot_city_mask.png"
human = { concept = [4, 3], prompt = [3, 4] }   # ratings 0..4, one per rater group

[[cases]]
id = "teapot-forest"
concept = "teapot"
prompt = "a teapot in the forest"
image = "out/teapot_forest.png"
mask = "out/teapot_forest_mask.png"
distractors = ["a teapot on a kitchen table", "a teapot in the city"]   # instead of the other teapot prompts

[[cases]]
id = "teapot-beach"
concept = "teapot"
prompt = "a teapot on the beach"
image = "out/teapot_beach.png"
mask = "out/teapot_beach_mask.png"

[[cases]]                         # no id: it defaults to "teapot-3" (third teapot case)
concept = "teapot"
prompt = "a teapot in the snow"
image = "out/teapot_snow.png"
mask = "out/teapot_snow_mask.png"
'''

CSV_SUITE = '''\
# The demo suite again, with its cases in cases.csv. Generated by scripts/make_demo_suite.py.
# Concepts stay here; paths in the CSV are relative to this file. Gates as in masc_demo.toml
# (set for the real SigLIP2 model; scores of the tiny test checkpoint are meaningless).

cases = "cases.csv"

[suite]
name = "demo-csv"
''' + GATES_AND_CONCEPTS

CASES_CSV = '''\
id,concept,prompt,image,mask,min_concept,distractors,human_concept,human_prompt
robot-beach,robot,a toy robot on the beach,out/robot_beach.png,out/robot_beach_mask.png,,,4|4,3|4
robot-snow,robot,a toy robot in the snow,out/robot_snow.png,out/robot_snow_mask.png,0.6,,,
robot-city,robot,a toy robot in the city,out/robot_city.png,out/robot_city_mask.png,,,4|3,3|4
teapot-forest,teapot,a teapot in the forest,out/teapot_forest.png,out/teapot_forest_mask.png,,a teapot on a kitchen table|a teapot in the city,,
teapot-beach,teapot,a teapot on the beach,out/teapot_beach.png,out/teapot_beach_mask.png,,,,
,teapot,a teapot in the snow,out/teapot_snow.png,out/teapot_snow_mask.png,,,,
'''


def _save_png(image: Image.Image, path: Path) -> None:
    image.save(path, format="PNG", compress_level=9)


def write_demo_suite(out: Path) -> list[Path]:
    """Write the demo suite into ``out`` (created if needed); return the files written."""
    out = Path(out)
    (out / "refs").mkdir(parents=True, exist_ok=True)
    (out / "out").mkdir(parents=True, exist_ok=True)
    written = []
    for ref in REFERENCES:
        plain = Image.new("RGB", ref.size, ref.colour)
        image, mask = render(ref.shape, plain, height_fraction=ref.height_fraction, centre=ref.centre)
        for picture, path in ((image, out / "refs" / f"{ref.file}.png"), (mask, out / "refs" / f"{ref.file}_mask.png")):
            _save_png(picture, path)
            written.append(path)
    for output in OUTPUTS:
        background = render_background(output.background, *output.size)
        image, mask = render(output.shape, background, height_fraction=output.height_fraction, centre=output.centre)
        for picture, path in ((image, out / "out" / f"{output.file}.png"), (mask, out / "out" / f"{output.file}_mask.png")):
            _save_png(picture, path)
            written.append(path)
    for text, name in ((TOML_SUITE, "masc_demo.toml"), (CSV_SUITE, "masc_demo_csv.toml"), (CASES_CSV, "cases.csv")):
        path = out / name
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    written = write_demo_suite(args.out)
    total = sum(path.stat().st_size for path in written)
    print(f"wrote {len(written)} files ({total / 1024:.0f} KiB) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
