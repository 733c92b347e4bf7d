"""A cartoon portrait rasterised with numpy: identity parameters + per-frame motion -> RGB frames.

Everything is a soft-edged ellipse composited back to front on a 2x supersampled canvas, then
box-downsampled (anti-aliasing). Beside colour, each ellipse composites what it is made of (skin,
hair, any part of the head), so that photographic detail (`texture`) and a directional light can
be laid over the finished head, moving with it. Each ellipse is evaluated for a whole batch of
frames at once, only inside the box that bounds it over the batch, so Python overhead is paid per
clip rather than per frame. Coordinates are normalised: x right and y down, both in [-1, 1]
across the image, so a face looks the same at every resolution.

Pose conventions: positive yaw moves the inner features toward image right; positive pitch nods the
head down (features move down); positive roll turns the head clockwise in the image about the neck;
tx, ty move the whole head right and down (normalised units) while the shoulders stay.
"""

import dataclasses

import numpy as np

from jaxtalk.data.synthtalk import motion as motion_lib
from jaxtalk.data.synthtalk import texture

IDENTITY_PARAMS = (
  "face_width",
  "face_height",
  "skin_r",
  "skin_g",
  "skin_b",
  "hair_r",
  "hair_g",
  "hair_b",
  "hair_style",
  "eye_r",
  "eye_g",
  "eye_b",
  "eye_size",
  "brow_thickness",
  "lip_r",
  "lip_g",
  "lip_b",
  "bg_top_r",
  "bg_top_g",
  "bg_top_b",
  "bg_bottom_r",
  "bg_bottom_g",
  "bg_bottom_b",
  "bg_angle",
  "shirt_r",
  "shirt_g",
  "shirt_b",
  "bg_photo",  # how much of the background is a photograph rather than the gradient
  "light_x",  # direction the light comes from, in the image plane
  "light_y",
  "light_strength",  # brightness difference between the lit and the far side of the head
  "exposure",  # overall brightness of the head
  "skin_detail",  # contrast of the skin's photographic detail
  "hair_detail",
  "texture_seed",  # which photographs and crops (an integer; unreadable by design)
)
# Parameters that only seed a random choice (which photographs): no pixel value follows from their
# value, so nothing is asked to read them back.
SEED_PARAMS = ("texture_seed",)
HAIR_STYLES = ("short", "long", "bob", "shaved", "afro")

_SKIN_TONES = np.array(
  [
    (0.98, 0.87, 0.78),
    (0.93, 0.76, 0.64),
    (0.80, 0.60, 0.45),
    (0.60, 0.41, 0.28),
    (0.40, 0.26, 0.18),
  ]
)
# Black, dark brown, brown, blond, red, grey; grey is the rarest.
_HAIR_COLOURS = np.array(
  [
    (0.08, 0.07, 0.07),
    (0.25, 0.15, 0.09),
    (0.45, 0.29, 0.15),
    (0.85, 0.70, 0.42),
    (0.62, 0.25, 0.10),
    (0.70, 0.70, 0.70),
  ]
)
_HAIR_WEIGHTS = np.array([0.25, 0.25, 0.2, 0.13, 0.1, 0.07])
_EYE_COLOURS = np.array(
  [(0.25, 0.45, 0.75), (0.30, 0.55, 0.35), (0.40, 0.25, 0.12), (0.15, 0.10, 0.07)]
)
_MOUTH_INSIDE = np.array([0.30, 0.06, 0.08], np.float32)
_TEETH = np.array([0.95, 0.94, 0.90], np.float32)
_SCLERA = np.array([0.97, 0.97, 0.96], np.float32)
_DARK = np.array([0.08, 0.06, 0.06], np.float32)
# What a painted ellipse is made of: a coverage plane each, composited like the colour planes.
_MATERIALS = ("skin", "hair", "head")
_MADE_OF = {  # an ellipse's value in each material plane
  None: np.zeros(3, np.float32),
  "skin": np.array([1, 0, 1], np.float32),
  "hair": np.array([0, 1, 1], np.float32),
  "head": np.array([0, 0, 1], np.float32),
}
_TEXTURE_SEEDS = 1 << 24  # integers below this are exact in float32

_HEAD_CENTRE = (0.0, -0.04)
# Sizes at which the mouth spans ~12-18 px wide and opens up to ~8 px in a 64 px frame.
_MOUTH_HALF_WIDTH = (0.19, 0.08)  # rest + gain x mouth_width
_MOUTH_MAX_HALF_OPEN = 0.125
_LIP_THICKNESS = 0.045
_JAW_DROP = 0.09
# How far a full smile lifts (or a turned-down mouth drops) the mouth's corners: 3 px at 128 px.
_SMILE_LIFT = 0.05
# Supersampled pixels per rendering batch (16 frames at 64 px): small enough that the temporaries
# of one ellipse stay in cache (measured ~1.5x faster than whole clips), large enough that Python
# overhead stays small.
_BATCH_PIXELS = 1 << 18


def _index(name: str) -> int:
  return IDENTITY_PARAMS.index(name)


def sample_identity(rng: np.random.Generator) -> np.ndarray:
  """A random identity: float32 `[len(IDENTITY_PARAMS)]`, colours in [0, 1]."""
  tone = rng.uniform(0.0, len(_SKIN_TONES) - 1)
  low = min(int(tone), len(_SKIN_TONES) - 2)
  skin = _SKIN_TONES[low] + (tone - low) * (_SKIN_TONES[low + 1] - _SKIN_TONES[low])
  skin = np.clip(skin + rng.normal(0.0, 0.02, 3), 0.0, 1.0)
  hair = np.clip(
    _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)] + rng.normal(0.0, 0.03, 3), 0, 1
  )
  eye = np.clip(_EYE_COLOURS[rng.integers(len(_EYE_COLOURS))] + rng.normal(0.0, 0.04, 3), 0.0, 1.0)
  lip = np.clip(
    skin * np.array([0.85, 0.55, 0.55]) + np.array([0.08, 0.0, 0.02]) + rng.normal(0.0, 0.03, 3),
    0,
    1,
  )
  bg_top = rng.uniform(0.2, 0.95, 3)
  bg_bottom = np.clip(bg_top * rng.uniform(0.5, 1.0) + rng.normal(0.0, 0.1, 3), 0.0, 1.0)
  values = {
    "face_width": rng.uniform(0.40, 0.48),
    "face_height": rng.uniform(0.50, 0.58),
    "hair_style": rng.integers(len(HAIR_STYLES)),
    "eye_size": rng.uniform(0.85, 1.15),
    "brow_thickness": rng.uniform(0.0, 1.0),
    "bg_angle": rng.uniform(0.0, 2.0 * np.pi),
    "bg_photo": 0.0 if rng.random() < 0.25 else rng.uniform(0.6, 1.0),
    "light_x": rng.uniform(-1.0, 1.0),
    "light_y": rng.uniform(-1.0, 0.3),  # mostly from above
    "light_strength": rng.uniform(0.0, 0.45),
    "exposure": rng.uniform(0.8, 1.15),
    "skin_detail": rng.uniform(0.0, 0.035),
    "hair_detail": rng.uniform(0.05, 0.18),
    "texture_seed": rng.integers(_TEXTURE_SEEDS),
  }
  for prefix, colour in (
    ("skin", skin),
    ("hair", hair),
    ("eye", eye),
    ("lip", lip),
    ("bg_top", bg_top),
    ("bg_bottom", bg_bottom),
    ("shirt", rng.uniform(0.05, 0.95, 3)),
  ):
    for channel, value in zip("rgb", colour):
      values[f"{prefix}_{channel}"] = value
  return np.array([values[name] for name in IDENTITY_PARAMS], np.float32)


def _colour(identity: np.ndarray, prefix: str) -> np.ndarray:
  start = _index(f"{prefix}_r")
  return identity[start : start + 3].astype(np.float32)


def _per_frame(value) -> np.ndarray:
  """A scalar or `[T]` parameter shaped `[T or 1, 1, 1]` to broadcast over `[T, rows, cols]`."""
  return np.asarray(value, np.float32).reshape(-1, 1, 1)


class _Canvas:
  """A batch of supersampled float RGB images that soft ellipses are composited onto.

  Stored as planes `[3 + len(_MATERIALS), T, size, size]`, colour then material coverage:
  compositing one contiguous plane at a time is several times faster than broadcasting over a
  trailing channel axis.
  """

  def __init__(self, num_frames: int, size: int):
    self.size = size
    self.planes = np.zeros((3 + len(_MATERIALS), num_frames, size, size), np.float32)
    self.pixels_per_unit = np.float32(size / 2.0)
    self.coords = (np.arange(size, dtype=np.float32) + 0.5) / self.pixels_per_unit - 1.0

  def _span(self, low: np.ndarray, high: np.ndarray) -> slice:
    """Pixel rows/columns covering [min(low), max(high)] in normalised units, plus a margin."""
    start = int(np.floor((float(np.min(low)) + 1.0) * self.pixels_per_unit)) - 2
    stop = int(np.ceil((float(np.max(high)) + 1.0) * self.pixels_per_unit)) + 2
    return slice(min(max(start, 0), self.size), min(max(stop, 0), self.size))

  def soft_step(self, value: np.ndarray, softness: float = 1.0) -> np.ndarray:
    """0 -> 1 as `value` (a distance in normalised units) goes from negative to positive."""
    return np.clip(0.5 + value * (self.pixels_per_unit / np.float32(softness)), 0.0, 1.0)

  def ellipse(
    self,
    centre,
    radii,
    colour,
    angle=0.0,
    radius_below=None,
    opacity=1.0,
    softness=1.0,
    mask=None,
    material=None,
    bend=0.0,
  ):
    """Paints an ellipse with half-axes `radii`, turned clockwise by `angle` radians.

    Every geometric argument is a scalar or one value per frame. `radius_below` gives the half of
    the ellipse below its centre (in its own frame) another vertical half-axis, e.g. a jaw that
    drops. `softness` is the edge ramp width in canvas pixels. `mask(x, y)`, with x, y in the
    ellipse's own frame, multiplies the coverage (hairlines, eyelids, teeth). `material` is None
    for what is not the head, else "skin", "hair" or "head" (any other part of it). `bend` curves
    the ellipse along its own x axis: its points at x move up by bend * x^2 (a smile's corners).
    """
    centre_x, centre_y = _per_frame(centre[0]), _per_frame(centre[1])
    half_w, half_h = _per_frame(radii[0]), _per_frame(radii[1])
    half_h_below = half_h if radius_below is None else _per_frame(radius_below)
    reach = np.maximum(np.maximum(half_w, half_h), half_h_below)
    rows = self._span(centre_y - reach, centre_y + reach)
    cols = self._span(centre_x - reach, centre_x + reach)
    if rows.start >= rows.stop or cols.start >= cols.stop:
      return
    dx = self.coords[None, None, cols] - centre_x
    dy = self.coords[None, rows, None] - centre_y
    angle = _per_frame(angle)
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = cos * dx + sin * dy, cos * dy - sin * dx
    y = y + _per_frame(bend) * np.square(x)
    vertical = half_h if radius_below is None else np.where(y > 0, half_h_below, half_h)
    # First-order signed distance to the boundary of f = (x/w)^2 + (y/h)^2 - 1: f / |grad f|.
    # (The factor 2 of the gradient is folded into the 0.5 of f.)
    grad_x, grad_y = x / np.square(half_w), y / np.square(vertical)
    implicit = 0.5 * (x * grad_x + y * grad_y - 1.0)
    distance = implicit / np.sqrt(grad_x * grad_x + grad_y * grad_y + np.float32(1e-12))
    coverage = self.soft_step(-distance, softness) * _per_frame(opacity)
    if mask is not None:
      coverage *= mask(x, y)
    values = np.concatenate([np.asarray(colour, np.float32), _MADE_OF[material]])
    for plane, value in zip(self.planes[:, :, rows, cols], values):
      plane += coverage * (value - plane)

  def downsampled(self) -> np.ndarray:
    """Averages 2x2 blocks into uint8 frames `[T, size / 2, size / 2, 3]`."""
    rows = self.planes[:3, :, 0::2] + self.planes[:3, :, 1::2]
    planes = (rows[..., 0::2] + rows[..., 1::2]) * np.float32(255.0 / 4.0)
    return np.clip(np.rint(planes), 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)


@dataclasses.dataclass(frozen=True)
class _Pose:
  """Places head-local points (offsets from the head centre, with a depth) into the image."""

  face_width: float
  face_height: float
  yaw: np.ndarray  # [T] radians
  pitch: np.ndarray
  roll: np.ndarray
  tx: np.ndarray  # [T] normalised units
  ty: np.ndarray

  @property
  def centre(self) -> tuple[np.ndarray, np.ndarray]:
    return _HEAD_CENTRE[0] + self.tx, _HEAD_CENTRE[1] + self.ty

  @property
  def squeeze(self) -> np.ndarray:
    """Turning the head narrows its silhouette (exaggerated so a few degrees read at 64 px)."""
    return 1.0 - 0.8 * np.abs(np.sin(self.yaw))

  def place(self, x, y, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Features in front of the head (depth > 0) shift with yaw and pitch; then the head rolls."""
    centre_x, centre_y = self.centre
    px = centre_x + x * self.squeeze + depth * np.sin(self.yaw)
    py = centre_y + y * (1.0 - 0.3 * np.abs(np.sin(self.pitch))) + depth * np.sin(self.pitch)
    pivot_x, pivot_y = centre_x, centre_y + self.face_height
    dx, dy = px - pivot_x, py - pivot_y
    cos, sin = np.cos(self.roll), np.sin(self.roll)
    return pivot_x + cos * dx - sin * dy, pivot_y + sin * dx + cos * dy


def _paint_body(canvas: _Canvas, identity: np.ndarray, photo: np.ndarray) -> None:
  """Background (a gradient under a photograph `[3, S, S]`), shoulders, neck: what stays put."""
  angle = identity[_index("bg_angle")]
  along = np.cos(angle) * canvas.coords[None, :] + np.sin(angle) * canvas.coords[:, None]
  blend = np.clip(0.5 + 0.5 * along, 0.0, 1.0)
  top, bottom = _colour(identity, "bg_top"), _colour(identity, "bg_bottom")
  gradient = top[:, None, None] * (1.0 - blend) + bottom[:, None, None] * blend
  share = identity[_index("bg_photo")]
  canvas.planes[:3] = ((1.0 - share) * gradient + share * photo)[:, None]
  skin, shirt = _colour(identity, "skin"), _colour(identity, "shirt")
  neck_top = _HEAD_CENTRE[1] + 0.6 * float(identity[_index("face_height")])
  canvas.ellipse((0.0, neck_top + 0.3), (0.19, 0.42), skin * 0.82)
  canvas.ellipse((0.0, 1.25), (0.98, 0.52), shirt)
  # Shade the shirt darker toward the bottom of the frame.
  canvas.ellipse(
    (0.0, 1.25),
    (0.98, 0.52),
    shirt * 0.75,
    softness=12.0,
    opacity=0.5,
    mask=lambda x, y: canvas.soft_step(y, 20.0),
  )
  # A round neckline: the lower half of a skin ellipse cut into the shirt.
  canvas.ellipse((0.0, 0.74), (0.2, 0.1), skin * 0.8, mask=lambda x, y: canvas.soft_step(y))


def _paint_back_hair(canvas: _Canvas, pose: _Pose, hair: np.ndarray, style: str) -> None:
  fw, fh = pose.face_width * pose.squeeze, pose.face_height
  # (vertical offset, half-width and half-height over the face's, where the hair ends below).
  shapes = {
    "long": (0.35, 1.3, 1.45, 0.95),
    "bob": (0.05, 1.28, 1.12, 0.7),
    "afro": (-0.2, 1.45, 1.2, 0.55),
  }
  if style not in shapes:
    return
  offset, width, height, end = shapes[style]
  canvas.ellipse(
    pose.place(0.0, offset * fh, -0.05),
    (width * fw, height * fh),
    hair * 0.85,
    angle=pose.roll,
    mask=lambda x, y: canvas.soft_step(end * fh - y, 2.0),
    material="hair",
  )


def _paint_face(canvas: _Canvas, skin: np.ndarray, pose: _Pose, jaw: np.ndarray) -> None:
  fw, fh = pose.face_width * pose.squeeze, pose.face_height
  for side in (-1.0, 1.0):
    ear = pose.place(side * 0.97 * pose.face_width, 0.02 * fh, -0.1)
    canvas.ellipse(ear, (0.07, 0.12), skin * 0.88, angle=pose.roll, material="skin")
  chin = fh + _JAW_DROP * jaw
  canvas.ellipse(
    pose.place(0.0, 0.0, 0.0),
    (fw, fh),
    skin * 0.86,
    angle=pose.roll,
    radius_below=chin,
    material="skin",
  )
  # A wide soft inner ellipse leaves a darker rim: cheap shading that gives the head volume.
  canvas.ellipse(
    pose.place(0.0, -0.05 * fh, 0.05),
    (0.9 * fw, 0.9 * fh),
    skin,
    angle=pose.roll,
    radius_below=0.93 * chin,
    softness=10.0,
    material="skin",
  )


def _paint_hair_cap(
  canvas: _Canvas, skin: np.ndarray, pose: _Pose, hair: np.ndarray, style: str
) -> None:
  fw, fh = _per_frame(pose.face_width * pose.squeeze), pose.face_height
  offset = -0.07 * fh
  if style == "shaved":
    colour, brow_gap = 0.55 * skin + 0.45 * hair, 0.62
  else:
    colour, brow_gap = hair, 0.45
  # Hairline: high on the forehead, down to the temples at the sides.
  hairline = lambda x, y: canvas.soft_step(
    (-brow_gap + 0.5 * np.square(x / fw)) * fh - (y + offset), 1.5
  )
  canvas.ellipse(
    pose.place(0.0, offset, 0.0),
    (1.06 * fw, 1.02 * fh),
    colour,
    angle=pose.roll,
    mask=hairline,
    material="hair",
  )


def _paint_eyes(
  canvas: _Canvas, identity: np.ndarray, pose: _Pose, blink: np.ndarray, brow: np.ndarray
) -> None:
  fw, fh = pose.face_width, pose.face_height
  size = float(identity[_index("eye_size")])
  half_w, half_h = 0.085 * size, 0.058 * size
  lid = np.maximum(half_h * (1.0 - blink), 0.004)
  frame_lid = _per_frame(lid)
  inside_lids = lambda x, y: canvas.soft_step(frame_lid - np.abs(y))
  iris_radius = 0.048 * size
  brow_colour = _colour(identity, "hair") * 0.9
  brow_half_h = 0.014 + 0.018 * float(identity[_index("brow_thickness")])
  for side in (-1.0, 1.0):
    centre = pose.place(side * 0.4 * fw, -0.08 * fh, 0.55)
    # The dark outline doubles as the lash line once the lids are shut.
    canvas.ellipse(centre, (half_w + 0.012, lid + 0.016), _DARK, angle=pose.roll, material="head")
    canvas.ellipse(centre, (half_w, lid), _SCLERA, angle=pose.roll, material="head")
    canvas.ellipse(
      centre,
      (iris_radius, iris_radius),
      _colour(identity, "eye"),
      angle=pose.roll,
      mask=inside_lids,
      material="head",
    )
    canvas.ellipse(
      centre,
      (0.45 * iris_radius, 0.45 * iris_radius),
      _DARK,
      angle=pose.roll,
      mask=inside_lids,
      material="head",
    )
    # Brows rise with `brow`; raised brows lift their inner ends, lowered ones knit them down.
    brow_centre = pose.place(side * 0.4 * fw, -0.08 * fh - 0.115 - 0.06 * brow, 0.55)
    canvas.ellipse(
      brow_centre,
      (0.105, brow_half_h),
      brow_colour,
      angle=pose.roll + side * 0.3 * brow,
      material="hair",
    )


def _paint_nose(canvas: _Canvas, skin: np.ndarray, pose: _Pose) -> None:
  fh = pose.face_height
  canvas.ellipse(
    pose.place(0.0, 0.1 * fh, 0.75),
    (0.035, 0.12),
    np.minimum(skin * 1.06, 1.0),
    angle=pose.roll,
    softness=4.0,
    opacity=0.8,
    material="skin",
  )
  canvas.ellipse(
    pose.place(0.0, 0.25 * fh, 0.85),
    (0.06, 0.035),
    skin * 0.72,
    angle=pose.roll,
    softness=2.0,
    material="skin",
  )


def _paint_mouth(
  canvas: _Canvas,
  lip_colour: np.ndarray,
  pose: _Pose,
  open_: np.ndarray,
  width: np.ndarray,
  jaw: np.ndarray,
  smile: np.ndarray,
) -> None:
  fh = pose.face_height
  open_, width = np.clip(open_, 0.0, 1.0), np.clip(width, 0.0, 1.0)
  half_open = _MOUTH_MAX_HALF_OPEN * open_
  smile = np.clip(smile, -1.0, 1.0)
  # A smile also draws the corners a little apart.
  half_w = (
    (_MOUTH_HALF_WIDTH[0] + _MOUTH_HALF_WIDTH[1] * width)
    * (1.0 + 0.1 * np.maximum(smile, 0.0))
    * pose.squeeze
  )
  bend = smile * _SMILE_LIFT / np.square(half_w)
  # The lower lip travels with the jaw, so the opening grows mostly downward.
  centre = pose.place(0.0, 0.5 * fh + 0.5 * _JAW_DROP * jaw + 0.6 * half_open, 0.6)
  # Rounded vowels (width -> 0) push the lips forward: thicker lips.
  thickness = _LIP_THICKNESS * (1.25 - 0.4 * width)
  canvas.ellipse(
    centre,
    (half_w + 0.02, half_open + thickness),
    lip_colour,
    angle=pose.roll,
    material="skin",
    bend=bend,
  )
  inner_h = np.maximum(half_open, 0.016)
  canvas.ellipse(
    centre, (0.85 * half_w, inner_h), _MOUTH_INSIDE, angle=pose.roll, material="head", bend=bend
  )
  frame_inner_h = _per_frame(inner_h)
  teeth_band = lambda x, y: canvas.soft_step(0.04 - frame_inner_h - y)
  canvas.ellipse(
    centre,
    (0.85 * half_w, inner_h),
    _TEETH,
    angle=pose.roll,
    mask=teeth_band,
    opacity=np.clip((half_open - 0.02) / 0.03, 0.0, 1.0),
    material="head",
    bend=bend,
  )


@dataclasses.dataclass(frozen=True)
class _Surfaces:
  """One identity's photographs at canvas resolution: background, and skin and hair detail.

  The detail maps have a margin of `margin` canvas pixels on every side, so that they can move
  with the head's translation.
  """

  background: np.ndarray  # [3, S, S]
  skin: np.ndarray  # [S + 2 margin, S + 2 margin]
  hair: np.ndarray
  margin: int

  @classmethod
  def of(cls, identity: np.ndarray, canvas_size: int) -> "_Surfaces":
    rng = np.random.default_rng([int(identity[_index("texture_seed")]), 0x7E47])
    margin = int(np.ceil(motion_lib.HEAD_SHIFT_LIMIT * canvas_size / 2)) + 1
    padded = canvas_size + 2 * margin
    return cls(
      background=texture.background(rng, canvas_size),
      skin=texture.detail(rng, "skin", padded),
      hair=texture.detail(rng, "hair", padded),
      margin=margin,
    )

  def shifted(self, detail: np.ndarray, pose: _Pose, canvas: _Canvas) -> np.ndarray:
    """`detail` moved with the head, per frame: `[T, S, S]` (to the nearest canvas pixel)."""
    size, margin = canvas.size, self.margin
    shift = lambda offset: np.clip(np.rint(offset * canvas.pixels_per_unit), -margin, margin)
    rows, cols = shift(pose.ty).astype(int), shift(pose.tx).astype(int)
    return np.stack(
      [
        detail[margin - r : margin - r + size, margin - c : margin - c + size]
        for r, c in zip(rows, cols)
      ]
    )


def _light(canvas: _Canvas, identity: np.ndarray, pose: _Pose, surfaces: _Surfaces) -> None:
  """Lays a directional light and the photographic skin and hair detail over the painted head."""
  skin, hair, head = canvas.planes[3:]
  centre_x, centre_y = (_per_frame(c) for c in pose.centre)
  light = np.array([identity[_index("light_x")], identity[_index("light_y")]], np.float32)
  light /= max(float(np.hypot(*light)), 1e-3)
  # Where a point of the head is, along the light's direction, in face heights from its centre.
  along = (
    light[0] * (canvas.coords[None, None, :] - centre_x)
    + light[1] * (canvas.coords[None, :, None] - centre_y)
  ) / np.float32(pose.face_height)
  lit = identity[_index("exposure")] * (
    1.0 + identity[_index("light_strength")] * np.clip(along, -1.0, 1.0)
  )
  gain = 1.0 + head * (lit - 1.0)
  gain += skin * identity[_index("skin_detail")] * surfaces.shifted(surfaces.skin, pose, canvas)
  gain += hair * identity[_index("hair_detail")] * surfaces.shifted(surfaces.hair, pose, canvas)
  canvas.planes[:3] *= gain


def _paint_head(
  canvas: _Canvas, identity: np.ndarray, motion: np.ndarray, surfaces: _Surfaces
) -> None:
  params = dict(zip(motion_lib.MOTION_PARAMS, motion.astype(np.float64).T))
  pose = _Pose(
    float(identity[_index("face_width")]),
    float(identity[_index("face_height")]),
    *np.deg2rad([params["yaw"], params["pitch"], params["roll"]]),
    tx=params["tx"],
    ty=params["ty"],
  )
  skin, hair = _colour(identity, "skin"), _colour(identity, "hair")
  style = HAIR_STYLES[
    int(np.clip(round(float(identity[_index("hair_style")])), 0, len(HAIR_STYLES) - 1))
  ]
  _paint_back_hair(canvas, pose, hair, style)
  _paint_face(canvas, skin, pose, params["jaw"])
  _paint_hair_cap(canvas, skin, pose, hair, style)
  _paint_eyes(canvas, identity, pose, params["blink"], params["brow"])
  _paint_nose(canvas, skin, pose)
  _paint_mouth(
    canvas,
    _colour(identity, "lip"),
    pose,
    params["mouth_open"],
    params["mouth_width"],
    params["jaw"],
    params["smile"],
  )
  _light(canvas, identity, pose, surfaces)


def render_clip(identity: np.ndarray, motion: np.ndarray, size: int) -> np.ndarray:
  """Frames uint8 `[T, size, size, 3]` of `identity` posed by `motion` `[T, P]` (MOTION_PARAMS order)."""
  identity = np.asarray(identity, np.float32)
  motion = np.asarray(motion, np.float32)
  if identity.shape != (len(IDENTITY_PARAMS),):
    raise ValueError(f"identity must have shape ({len(IDENTITY_PARAMS)},), got {identity.shape}")
  if motion.ndim != 2 or motion.shape[1] != len(motion_lib.MOTION_PARAMS):
    raise ValueError(
      f"motion must have shape [T, {len(motion_lib.MOTION_PARAMS)}], got {motion.shape}"
    )
  if size < 8:
    raise ValueError(f"image size must be at least 8, got {size}")
  surfaces = _Surfaces.of(identity, 2 * size)
  body = _Canvas(1, 2 * size)
  _paint_body(body, identity, surfaces.background)
  batch = max(1, _BATCH_PIXELS // (4 * size * size))
  frames = np.empty((len(motion), size, size, 3), np.uint8)
  for start in range(0, len(motion), batch):
    chunk = motion[start : start + batch]
    canvas = _Canvas(len(chunk), 2 * size)
    canvas.planes[:] = body.planes
    _paint_head(canvas, identity, chunk, surfaces)
    frames[start : start + len(chunk)] = canvas.downsampled()
  return frames


def render_face(identity: np.ndarray, motion: np.ndarray, size: int) -> np.ndarray:
  """One frame: uint8 `[size, size, 3]` of `identity` posed by `motion` `[P]`."""
  return render_clip(identity, np.asarray(motion, np.float32)[None], size)[0]
