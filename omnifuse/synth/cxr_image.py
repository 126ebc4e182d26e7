"""Synthetic chest radiographs: a fast, vectorised renderer of plausible grey-scale chest films.

What is modelled
----------------
The image is built as a *density* map (0 = air outside the patient, ~0.2 aerated lung, ~0.6 soft tissue,
~0.75 heart / abdomen, ~0.9 bone, >1 metal) in patient coordinates ``(u, v)``: ``u`` runs across the
patient in units of half the image width (patient right = image left, the radiological convention),
``v`` runs head to foot in the same units. A per-patient pose (shift, size, in-plane rotation of a few
degrees) maps image pixels to ``(u, v)``, so anatomy varies from patient to patient. Frontal views (AP,
PA) show body outline, neck and shoulders, lungs with branching vascular markings from the hila,
mediastinum, trachea and bronchi, a heart whose width follows the cardiothoracic ratio (~0.45 normal up
to ~0.65 with severe cardiomegaly), spine, posterior and anterior ribs, clavicles, scapulae, humeral
heads, diaphragm domes with sharp costophrenic angles, abdomen and gastric bubble. AP (portable) films
are supine/semi-erect bedside films: magnified heart, shallower inspiration, scapulae over the lungs,
lower contrast, more noise, ECG electrodes, and a side marker. LATERAL is a side projection (sternum,
retrosternal space, heart anteriorly, spine posteriorly, posterior costophrenic sulcus).

Findings are drawn where a radiologist would look for them (see :func:`_apply_frontal_findings`):
consolidation as patchy density in the lower/mid zone of the given lung, effusion as dependent fluid with
a meniscus blunting the costophrenic angle, edema as bilateral perihilar haze with congested vessels,
atelectasis as basal plate-like bands, pneumothorax as an apical/lateral lucent rim without markings
bounded by a thin pleural line. Support devices (endotracheal tube, enteric tube, central venous
catheter, pacemaker, sternotomy wires) are thin bright curves and metal objects.

``artifact`` in [0, 1] degrades the film with a random mixture of motion ghosting, blur, grid lines,
collimation cut-off, exposure errors, contrast collapse and heavy quantum noise; contrast collapse and
noise grow monotonically so that at ``artifact >= 0.8`` findings are essentially invisible.

Speed (~3 ms for a 288x256 film on one core): the smooth anatomy, findings and blur/motion artifacts are
computed as float32 numpy expressions on a cached half-resolution coordinate grid and upsampled
bilinearly; the sharp parts (vessel and interstitial texture, noise, devices, grid lines) are added at
full resolution. Textures (vessel trees, noise fields) are generated once per image shape
(``functools.lru_cache``) and sampled through random windows; full-resolution temporaries live in
per-thread scratch buffers. All randomness comes from one fixed-size block of uniforms drawn from
``rng``, split into separate sub-blocks for anatomy, each finding, devices and artifacts, so the same
``rng`` state gives the same anatomy whatever the findings (and identical bytes for identical inputs).
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from omnifuse.synth.cxr_findings import VIEWS, CxrFindings

__all__ = ["encode_jpeg", "render_cxr"]

_F32 = np.float32
_N_DRAWS = 336  # uniforms drawn per image (fixed, so anatomy never depends on the findings)
_BLOCKS = {  # start of each independent sub-block of uniforms
    "anatomy": 0,
    "opacity": 64,
    "effusion": 80,
    "edema": 96,
    "atelectasis": 112,
    "pneumothorax": 128,
    "ett": 144,
    "ng_tube": 160,
    "central_line": 176,
    "pacemaker": 192,
    "sternal_wires": 208,
    "ecg": 224,
    "artifact": 256,
    "exposure": 296,
    "diffuse": 320,
}
_LUT_SIZE = 2048
_LUT_MAX_DENSITY = 1.6
_N_VESSEL_TEXTURES = 6


# ----------------------------------------------------------------------------------------------------
# Random draws, geometry and cached per-shape data
# ----------------------------------------------------------------------------------------------------


class _Draws:
    """Sequential reader over one sub-block of pre-drawn uniforms (returns Python floats)."""

    def __init__(self, block: np.ndarray, name: str) -> None:
        self._values = block
        self._pos = _BLOCKS[name]

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        value = float(self._values[self._pos])
        self._pos += 1
        return low + (high - low) * value

    def chance(self, probability: float) -> bool:
        return self.uniform() < probability

    def integer(self, high: int) -> int:
        return min(int(self.uniform() * high), high - 1)


@dataclass(frozen=True)
class _Frame:
    """Pixel grid of one image shape; coordinates in units of half the image width, centred."""

    rows: int
    cols: int
    x: np.ndarray  # (1, cols)
    y: np.ndarray  # (rows, 1)

    @property
    def ppu(self) -> float:
        """Pixels per coordinate unit."""
        return self.cols / 2.0


@lru_cache(maxsize=16)
def _frame(rows: int, cols: int) -> _Frame:
    half = cols / 2.0
    x = ((np.arange(cols) + 0.5 - cols / 2.0) / half).astype(_F32)[None, :]
    y = ((np.arange(rows) + 0.5 - rows / 2.0) / half).astype(_F32)[:, None]
    return _Frame(rows, cols, x, y)


@lru_cache(maxsize=16)
def _half_frame(rows: int, cols: int) -> _Frame:
    """Grid of half the resolution whose pixel centres sit between full-resolution pixel pairs."""
    h, w = (rows + 1) // 2, (cols + 1) // 2
    half = cols / 2.0
    x = ((2.0 * np.arange(w) + 1.0 - cols / 2.0) / half).astype(_F32)[None, :]
    y = ((2.0 * np.arange(h) + 1.0 - rows / 2.0) / half).astype(_F32)[:, None]
    return _Frame(h, w, x, y)


_WORKSPACE = threading.local()


def _buffer(name: str, shape: tuple[int, ...], dtype=_F32) -> np.ndarray:
    """A reusable per-thread scratch array (full-resolution temporaries would otherwise churn malloc)."""
    buffers = _WORKSPACE.__dict__.setdefault("buffers", {})
    key = (name, shape, np.dtype(dtype).str)
    buf = buffers.get(key)
    if buf is None:
        if len(buffers) > 64:
            buffers.clear()
        buf = buffers[key] = np.empty(shape, dtype=dtype)
    return buf


def _upsample_axis(a: np.ndarray, axis: int, name: str) -> np.ndarray:
    """Bilinear 2x along ``axis`` (1 or 2) of a (k, h, w) stack: out[2i] = .75 a[i] + .25 a[i-1], etc."""
    n = a.shape[axis]
    shape = list(a.shape)
    shape[axis] = 2 * n
    out = _buffer(name, tuple(shape))
    scaled = _buffer(name + "-s", a.shape)
    side = _buffer(name + "-n", a.shape)
    np.multiply(a, _F32(0.75), out=scaled)

    def sl(start, stop, step=None):
        index = [slice(None)] * 3
        index[axis] = slice(start, stop, step)
        return tuple(index)

    for lo in (True, False):  # neighbour before (even outputs) / after (odd outputs), edge-clamped
        if lo:
            side[sl(1, n)] = a[sl(0, n - 1)]
            side[sl(0, 1)] = a[sl(0, 1)]
        else:
            side[sl(0, n - 1)] = a[sl(1, n)]
            side[sl(n - 1, n)] = a[sl(n - 1, n)]
        side *= _F32(0.25)
        side += scaled
        out[sl(0 if lo else 1, None, 2)] = side
    return out


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling of a (k, h, w) stack to (k, 2h, 2w), matching :func:`_half_frame`.

    The result lives in a per-thread scratch buffer: use it before the next call.
    """
    return _upsample_axis(_upsample_axis(a, 1, "up-rows"), 2, "up-cols")


@dataclass(frozen=True)
class _Pose:
    """Patient placement: image point (x, y) = shift + rotation(scaled patient point (u, v))."""

    tx: float
    ty: float
    angle: float
    sx: float
    sy: float

    def uv(self, frame: _Frame, x: np.ndarray | None = None, y: np.ndarray | None = None):
        """Patient coordinates (u, v) of the frame's pixels (or of given image coordinates)."""
        x = frame.x if x is None else x
        y = frame.y if y is None else y
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx = x - _F32(self.tx)
        dy = y - _F32(self.ty)
        u = _F32(c / self.sx) * dx + _F32(s / self.sx) * dy
        v = _F32(-s / self.sy) * dx + _F32(c / self.sy) * dy
        return u, v

    def to_pixels(self, frame: _Frame, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) floating pixel positions of patient points."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        x = self.tx + c * self.sx * u - s * self.sy * v
        y = self.ty + s * self.sx * u + c * self.sy * v
        return y * frame.ppu + frame.rows / 2.0 - 0.5, x * frame.ppu + frame.cols / 2.0 - 0.5


def _blurred_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field / field.std()).astype(_F32)


@dataclass(frozen=True)
class _Textures:
    """Noise fields somewhat larger than the image; windows at random offsets give per-image textures."""

    white: np.ndarray  # per-pixel quantum noise, std 1
    grain: np.ndarray  # slightly correlated noise, std 1
    patchy: np.ndarray  # half resolution: blobby field (~0.05 units) for patchy consolidation, std 1


def _texture_shape(rows: int, cols: int) -> tuple[int, int]:
    return rows + min(rows, 256), cols + min(cols, 256)


@lru_cache(maxsize=4)
def _textures(rows: int, cols: int) -> _Textures:
    rng = np.random.default_rng([rows, cols, 7])
    shape = _texture_shape(rows, cols)
    half = _texture_shape((rows + 1) // 2, (cols + 1) // 2)
    return _Textures(
        white=rng.standard_normal(shape).astype(_F32),
        grain=_blurred_noise(rng, shape, 0.8),
        patchy=_blurred_noise(rng, half, max(1.0, 0.0175 * cols)),
    )


def _window(field: np.ndarray, rows: int, cols: int, draws: _Draws) -> np.ndarray:
    """A rows x cols view of a larger texture at a random offset (no copy)."""
    r0 = draws.integer(field.shape[0] - rows + 1)
    c0 = draws.integer(field.shape[1] - cols + 1)
    return field[r0 : r0 + rows, c0 : c0 + cols]


# Hilum positions (u, v) that the vascular trees grow from, per projection.
_HILA = {"frontal": ((-0.2, -0.06), (0.2, -0.04)), "lateral": ((0.02, -0.08),)}


def _vessel_pad(cols: int) -> int:
    return max(4, round(0.15 * cols))


@lru_cache(maxsize=4)
def _vessel_bank(rows: int, cols: int, kind: str) -> np.ndarray:
    """Branching pulmonary vessel trees radiating from the hila, drawn at 2x and downsampled.

    Fine reticular noise (the interstitium) is added on top. Returns (K, rows + 2P, cols + 2P) float32,
    ~[0, 1]; the hila sit at their nominal position for an unshifted pose, so a window offset by the
    patient shift keeps them on the patient's hila. Large images get fewer textures (memory).
    """
    pad = _vessel_pad(cols)
    scale = 2 if cols <= 640 else 1
    count = _N_VESSEL_TEXTURES if cols <= 640 else 2
    px = cols / 256.0  # vessel calibre scales with the image
    height, width = (rows + 2 * pad) * scale, (cols + 2 * pad) * scale
    unit = cols / 2.0 * scale
    rng = np.random.default_rng([rows, cols, 11 if kind == "frontal" else 13])
    bank = np.empty((count, rows + 2 * pad, cols + 2 * pad), dtype=_F32)
    for k in range(count):
        image = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(image)
        for hu, hv in _HILA[kind]:
            x0 = (hu + 1.0) * unit + pad * scale
            y0 = hv * unit + rows * scale / 2.0 + pad * scale
            if kind == "frontal":
                outward = math.pi if hu < 0 else 0.0  # towards the lateral chest wall
                angles = outward + np.linspace(-1.5, 1.5, 10) * (1 if hu < 0 else -1)
            else:
                angles = rng.uniform(0, 2 * math.pi, 9)
            for angle in angles + rng.normal(0, 0.08, len(angles)):
                _grow_vessel(draw, rng, x0, y0, float(angle), 2.6 * scale * px, unit, depth=0)
        image = image.filter(ImageFilter.GaussianBlur(0.7 * scale * px))
        if scale > 1:
            image = image.reduce(scale)
        bank[k] = np.asarray(image, dtype=_F32) / 255.0
        bank[k] += _blurred_noise(rng, bank.shape[1:], max(0.6, 0.006 * cols)) * _F32(0.08)  # interstitium
    return bank


def _grow_vessel(draw, rng, x, y, angle, width, unit, depth) -> None:
    """Random-walk a vessel outward from (x, y), tapering and branching as it goes."""
    step = 0.03 * unit
    length = rng.uniform(0.35, 0.6) * unit * (0.7**depth)
    travelled = 0.0
    intensity = 200.0 * (0.8**depth)
    while travelled < length and width > 0.6 * unit / 256 and intensity > 20:
        angle += rng.normal(0, 0.2)
        nx, ny = x + step * math.cos(angle), y - step * math.sin(angle)
        draw.line([(x, y), (nx, ny)], fill=int(intensity), width=max(1, round(width)))
        x, y = nx, ny
        travelled += step
        width *= 0.93
        intensity *= 0.94
        if depth < 3 and rng.random() < 0.28:
            side = 1 if rng.random() < 0.5 else -1
            _grow_vessel(draw, rng, x, y, angle + side * rng.uniform(0.3, 0.7), width * 0.75, unit, depth + 1)


# ----------------------------------------------------------------------------------------------------
# Small vectorised shape helpers (all float32)
# ----------------------------------------------------------------------------------------------------


def _step(a: np.ndarray, width: float) -> np.ndarray:
    """Soft step: 0 for a << 0, 1 for a >> 0, linear over ``width`` coordinate units."""
    out = a * _F32(1.0 / width)
    out += _F32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _band(a: np.ndarray, half_width: float) -> np.ndarray:
    """Triangular ridge of height 1 where a == 0, falling to 0 at |a| == half_width."""
    out = np.abs(a)
    out *= _F32(-1.0 / half_width)
    out += _F32(1.0)
    return np.clip(out, 0.0, 1.0, out=out)


def _ellipse(u, v, cu: float, cv: float, au: float, av: float, edge: float, tilt: float = 0.0):
    """Soft filled ellipse (1 inside) centred at (cu, cv) with semi-axes (au, av), optional tilt."""
    du = u - _F32(cu)
    dv = v - _F32(cv)
    if tilt:
        c, s = _F32(math.cos(tilt)), _F32(math.sin(tilt))
        du, dv = c * du + s * dv, c * dv - s * du
    q = np.square(du * _F32(1.0 / au))
    q += np.square(dv * _F32(1.0 / av))
    return _step(_F32(1.0) - q, edge)


def _tri_wave(t: np.ndarray) -> np.ndarray:
    """Position inside the current period, folded: 0 at integer t, 1 half-way between."""
    f = t - np.floor(t)
    f -= _F32(0.5)
    np.abs(f, out=f)
    f *= _F32(-2.0)
    f += _F32(1.0)
    return f


def _smoothstep(lo: float, hi: float, x: float) -> float:
    t = min(max((x - lo) / (hi - lo), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


# ----------------------------------------------------------------------------------------------------
# Frontal anatomy
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FrontalAnatomy:
    """Per-patient anatomical parameters of a frontal film (coordinate units)."""

    body_half_width: float
    soft: float
    lung_cx: float
    lung_ax: float
    lung_cy: float
    lung_ay: float
    dome_right: float
    dome_left: float
    cp_level: float
    heart_ctr: float
    heart_cy: float
    heart_tilt: float
    air: float
    rib_start: float
    rib_spacing: float
    clavicle_level: float
    clavicle_slope: float
    scapula: float
    bubble: float
    vessel_gain: float
    carina: float


def _frontal_anatomy(d: _Draws, view: str, f: CxrFindings) -> _FrontalAnatomy:
    ap = view == "AP"
    h, b = f.hyperinflation, f.habitus
    inspiration = d.uniform(-0.05, 0.05) + (0.07 if ap else 0.0)  # shallower breath on portable films
    ctr = d.uniform(0.41, 0.49) + 0.2 * f.cardiomegaly - 0.04 * h
    return _FrontalAnatomy(
        body_half_width=d.uniform(0.95, 1.12) + 0.14 * b,
        soft=d.uniform(0.46, 0.53) + 0.1 * b,
        lung_cx=d.uniform(0.44, 0.47),
        lung_ax=d.uniform(0.37, 0.41),
        lung_cy=0.22 + inspiration * 0.5 + 0.05 * h,
        lung_ay=d.uniform(0.98, 1.06) - inspiration * 0.5 + 0.06 * h,
        dome_right=0.27 + inspiration + d.uniform(-0.03, 0.03) + 0.16 * h,  # hyperexpanded: low, flat domes
        dome_left=0.33 + inspiration + d.uniform(-0.03, 0.03) + 0.14 * h,
        cp_level=0.56 + inspiration * 0.8 + 0.1 * h,
        heart_ctr=ctr * (1.1 if ap else 1.0),  # AP projection magnifies the heart
        heart_cy=d.uniform(0.27, 0.31) + inspiration * 0.5,
        heart_tilt=d.uniform(0.25, 0.45),
        air=d.uniform(0.45, 0.52) * (0.9 if ap else 1.0) * (1.0 + 0.22 * h) * (1.0 - 0.25 * b),
        rib_start=d.uniform(-0.90, -0.84),
        rib_spacing=d.uniform(0.105, 0.125),
        clavicle_level=d.uniform(-0.70, -0.62) - (0.05 if ap else 0.0),
        clavicle_slope=d.uniform(0.18, 0.26) * (0.5 if ap else 1.0),
        scapula=d.uniform(0.05, 0.09) if ap else d.uniform(0.0, 0.03),
        bubble=d.uniform(0.0, 0.14),
        vessel_gain=d.uniform(0.17, 0.24) * (1.0 - 0.45 * h),  # emphysema: attenuated markings
        carina=d.uniform(-0.2, -0.12),
    )


@dataclass
class _Geometry:
    """Full-frame maps shared by the anatomy, the findings and the devices."""

    u: np.ndarray
    v: np.ndarray
    au: np.ndarray  # |u| (frontal) or u (lateral)
    right: np.ndarray  # weight of the patient's right side (image left)
    left: np.ndarray
    lung: np.ndarray  # aerated lung fraction before findings
    above: np.ndarray  # above the diaphragm
    occupied: np.ndarray  # heart / mediastinum overlying the lungs
    lung_q: np.ndarray  # ellipse radius^2 of the lung outline (1 on the pleura)


def _lung_q(au: np.ndarray, v: np.ndarray, cx: float, ax: float, cy: float, ay: float) -> np.ndarray:
    """Squared elliptic radius of the lung outline (1 on the pleura); apices medial, bases wide."""
    dx = au - _F32(cx)
    dx -= v * _F32(0.09)
    dx *= _F32(1.0 / ax) - v * _F32(0.4)
    q = np.square(dx)
    q += np.square((v - _F32(cy)) * _F32(1.0 / ay))
    return q


def _frontal_geometry(u: np.ndarray, v: np.ndarray, a: _FrontalAnatomy) -> _Geometry:
    au = np.abs(u)
    right = _step(-u, 0.04)
    left = _F32(1.0) - right
    # Lung outline: an ellipse per side (in |u|), cut by the diaphragm domes.
    lung_q = _lung_q(au, v, a.lung_cx, a.lung_ax, a.lung_cy, a.lung_ay)
    outline = _step(_F32(1.0) - lung_q, 0.12)
    dome_top = right * _F32(a.dome_right - a.dome_left)
    dome_top += _F32(a.dome_left)
    curvature = (a.cp_level - 0.5 * (a.dome_right + a.dome_left)) / (0.44**2)
    dome = np.square(np.clip(au - _F32(0.40), 0.0, None))
    dome += np.square(np.clip(_F32(0.40) - au, 0.0, None)) * _F32(0.35)  # flatter medially
    dome *= _F32(curvature)
    dome += dome_top
    above = _step(dome - v, 0.016)
    lung = outline * above
    return _Geometry(u, v, au, right, left, lung, above, np.zeros_like(lung), lung_q)


def _frontal_density(g: _Geometry, a: _FrontalAnatomy) -> tuple[np.ndarray, np.ndarray]:
    """Density of the normal frontal chest; returns (density without lung air, aerated-lung weight)."""
    u, v, au = g.u, g.v, g.au
    # Body outline with neck and sloping shoulders; soft tissue thicker centrally.
    neck = np.clip((_F32(0.56) - au) * _F32(1.0 / 0.28), 0.0, 1.0)
    shoulder = au * _F32(0.10) - _F32(1.02)
    shoulder -= np.square(neck) * _F32(0.45)
    body = _step(_F32(a.body_half_width) - au, 0.03)
    body *= _step(v - shoulder, 0.03)
    thickness = np.square(u * _F32(1.0 / a.body_half_width))
    thickness *= _F32(-0.12)
    thickness += _F32(a.soft + 0.12)
    density = body * thickness
    # Abdomen below the domes, with the gastric bubble under the left dome.
    abdomen = _F32(1.0) - g.above
    abdomen *= _step(_F32(a.lung_cx + a.lung_ax + 0.03) - au, 0.2)  # within the rib cage
    density += abdomen * _F32(0.13)
    if a.bubble > 0.02:
        bubble = _ellipse(u, v, 0.36, a.dome_left + 0.09, 0.09, 0.05, 0.4)
        density -= bubble * _F32(a.bubble)
    # Heart (tilted ellipse, width from the cardiothoracic ratio) and mediastinum.
    width = a.heart_ctr * 2.0 * (a.lung_cx + a.lung_ax)
    right_border = -0.31 * width + 0.02
    sheared = u - (v - _F32(a.heart_cy)) * _F32(a.heart_tilt)  # apex lower and to the patient's left
    heart = _ellipse(
        sheared, v, right_border + width / 2, a.heart_cy, width / 2, 0.4 + 0.12 * (width - 0.76), 0.25
    )
    medi_half = v * _F32(0.035)
    medi_half += _F32(0.125)
    medi = _step(medi_half - np.abs(u - _F32(0.015)), 0.02)
    medi *= _step(_F32(0.1) - v, 0.1)
    knob = _ellipse(u, v, 0.12, -0.3, 0.085, 0.065, 0.3)
    np.maximum(medi, knob, out=medi)
    occupied = np.maximum(heart, medi)
    density += heart * g.above * _F32(0.13)
    density += medi * _F32(0.05)
    g.occupied = occupied
    # Hila and vascular markings.
    hila = _ellipse(au, v, 0.2, -0.05, 0.07, 0.12, 0.6)
    density += hila * _F32(0.06)
    # Trachea and main bronchi (air columns).
    trachea = _band(u - _F32(0.005), 0.045)
    np.clip(trachea * _F32(2.0), 0.0, 1.0, out=trachea)
    trachea *= _step(_F32(a.carina) - v, 0.02)
    bronchi = _band(au - (v - _F32(a.carina)) * _F32(0.75), 0.028)
    bronchi *= _step(v - _F32(a.carina), 0.02)
    bronchi *= _step(_F32(a.carina + 0.14) - v, 0.04)
    np.maximum(trachea, bronchi, out=trachea)
    density -= trachea * _F32(0.13)
    density += _bones_frontal(u, v, au, a, body, g.above, occupied)
    return density, g.lung * (_F32(1.0) - occupied)


def _bones_frontal(u, v, au, a: _FrontalAnatomy, body: np.ndarray, above, occupied) -> np.ndarray:
    """Spine, posterior and anterior ribs, clavicles, scapulae and humeral heads."""
    # Spine: vertebral bodies with darker disc spaces and paired pedicles.
    t = (v + _F32(1.3)) * _F32(1.0 / 0.105)
    cycle = _tri_wave(t)
    spine = _band(u - _F32(0.01), 0.11)
    np.clip(spine * _F32(3.0), 0.0, 1.0, out=spine)
    spine *= _F32(0.7) + _F32(0.3) * np.clip(cycle * _F32(4.0), 0.0, 1.0)
    pedicle = _band(au - _F32(0.06), 0.018)
    pedicle *= _band(cycle - _F32(0.6), 0.25)
    bones = spine * _F32(0.07)
    bones += pedicle * _F32(0.04)
    # Posterior ribs: arcs rising slightly from the spine, then curving down laterally.
    bend = np.clip(au - _F32(0.55), 0.0, None)
    arc = au * _F32(-0.45)
    arc += np.square(au) * _F32(0.35)
    arc += np.square(bend) * _F32(2.2)
    rc = v - arc - _F32(a.rib_start)
    t = rc * _F32(1.0 / a.rib_spacing)
    t *= _F32(1.0) - rc * _F32(0.12)  # ribs spread slightly lower down
    rib = _tri_wave(t + _F32(0.5))
    rib -= _F32(0.42)
    np.clip(rib * _F32(5.0), 0.0, 1.0, out=rib)
    cage = _step(_F32(0.92) - au, 0.06)
    cage *= _step(au - _F32(0.08), 0.04)
    cage *= _step(t, 0.5)
    cage *= _step(_F32(10.5) - t, 1.0)
    cage *= _F32(0.35) + _F32(0.65) * above
    cage *= _F32(1.0) - _F32(0.5) * occupied
    rib *= cage
    bones += rib * _F32(0.075)
    # Anterior ribs: fainter, running down towards the sternum.
    ta = (v + au * _F32(0.42) - _F32(a.rib_start + 0.42)) * _F32(1.0 / (a.rib_spacing * 1.35))
    arib = _tri_wave(ta)
    arib -= _F32(0.7)
    np.clip(arib * _F32(3.0), 0.0, 1.0, out=arib)
    arib *= _step(au - _F32(0.3), 0.1)
    arib *= _step(_F32(0.9) - au, 0.05)
    arib *= _step(ta, 0.5)
    arib *= _step(_F32(5.5) - ta, 1.0)
    bones += arib * _F32(0.04)
    # Clavicles: S-shaped bands from the sternal notch up towards the shoulders.
    off = au - _F32(0.07)
    line = off * _F32(-a.clavicle_slope)
    line += np.square(off) * _F32(0.05)
    line += _F32(a.clavicle_level)
    clav = _band(v - line, 0.04)
    np.clip(clav * _F32(2.0), 0.0, 1.0, out=clav)
    clav *= _step(off, 0.03)
    clav *= _step(_F32(0.82) - au, 0.06)
    bones += clav * _F32(0.15)
    # Scapulae lateral to their medial borders (mostly on AP films) and humeral heads.
    if a.scapula > 0.005:
        border = v * _F32(0.3) + _F32(0.9)
        scap = _step(au - border, 0.03)
        scap *= _step(v + _F32(0.88), 0.05)
        scap *= _step(_F32(-0.12) - v, 0.1)
        bones += scap * _F32(a.scapula)
    humerus = _ellipse(au, v, 1.04, -0.88, 0.15, 0.15, 0.15)
    shaft = _band(au - _F32(1.1), 0.09) * _step(v + _F32(0.88), 0.05)
    np.maximum(humerus, shaft, out=humerus)
    bones += humerus * _F32(0.15)
    bones *= body
    return bones


# ----------------------------------------------------------------------------------------------------
# Frontal findings
# ----------------------------------------------------------------------------------------------------


def _side_weight(g: _Geometry, side: str) -> np.ndarray | float:
    if side == "bilateral":
        return 1.0
    return g.right if side == "right" else g.left


def _apply_frontal_findings(
    f: CxrFindings,
    g: _Geometry,
    a: _FrontalAnatomy,
    air: np.ndarray,
    density: np.ndarray,
    marks: np.ndarray,
    draws: np.ndarray,
    patchy: np.ndarray,
    ap: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Modify aerated-lung weight, density and vessel map in place for each present finding."""
    v, au = g.v, g.au
    if f.effusion > 0:
        d = _Draws(draws, "effusion")
        e = f.effusion
        asym = d.uniform(-0.08, 0.08) * e
        level = _F32(a.cp_level - 0.04 - 0.62 * e) + g.right * _F32(asym)
        rise = np.square(np.clip((au - _F32(0.3)) * _F32(2.0), 0.0, 1.0))  # meniscus up the lateral wall
        rise *= _F32(0.12 + 0.12 * e)
        level -= rise
        fluid = _step(v - level, 0.05 + 0.04 * e)
        hemithorax = _step(_F32(1.0) - g.lung_q, 0.12)
        fluid *= hemithorax
        if ap:  # layering fluid on a supine film: a veil over the lower hemithorax too
            veil = np.clip((v + _F32(0.3)) * _F32(0.7), 0.0, 1.0) * hemithorax
            np.maximum(fluid, veil * _F32(0.35 * e), out=fluid)
        fluid *= _side_weight(g, f.effusion_side)
        density += fluid * air * _F32(0.12)
        air *= _F32(1.0) - fluid
    if f.opacity > 0:
        d = _Draws(draws, "opacity")
        o = f.opacity
        blob = np.zeros_like(air)
        for _ in range(1 + int(o > 0.5)):
            cu, cv = d.uniform(0.3, 0.58), d.uniform(-0.05, 0.32)
            radius = 0.12 + 0.16 * o + d.uniform(-0.02, 0.02)
            one = _ellipse(au, v, cu, cv, radius * d.uniform(0.8, 1.2), radius, 0.9)
            np.maximum(blob, one, out=blob)
        patch = patchy * _F32(0.5)
        patch += _F32(0.6)
        np.clip(patch, 0.0, 1.0, out=patch)
        blob *= patch
        blob *= _side_weight(g, f.opacity_side)
        blob *= _F32(0.45 + 0.45 * o)
        air *= _F32(1.0) - blob
        density += blob * _F32(0.06)
        marks *= _F32(1.0) - blob
    if f.edema > 0:
        e = f.edema
        wing = _ellipse(au, v, 0.25, 0.0, 0.34, 0.42, 1.2)
        wing *= _F32(0.2 + 0.45 * e)
        wing += _F32(0.12 * e)  # diffuse interstitial haze
        air *= _F32(1.0) - wing
        marks *= _F32(1.0 + 0.6 * e)  # engorged, indistinct vessels
    if f.diffuse > 0:
        d = _Draws(draws, "diffuse")
        x = f.diffuse
        # Lung injury: patchy airspace opacity in both lungs, spreading up from the dependent bases and in
        # from the periphery as the extent grows, until the whole of both lungs is involved (white-out).
        top = a.lung_cy - a.lung_ay
        depth = (v - _F32(top)) * _F32(1.0 / (a.cp_level - top))
        depth += (au - _F32(a.lung_cx)) * _F32(0.6)  # peripheral predominance
        depth += patchy * _F32(0.15)
        cover = _step(depth - _F32(1.05 - 1.35 * x), 0.45)
        sides = g.right * _F32(d.uniform(0.85, 1.0)) + g.left * _F32(d.uniform(0.85, 1.0))
        cover *= sides
        cover *= _F32(0.3 + 0.55 * x)
        air *= _F32(1.0) - cover
        density += cover * _F32(0.04)
        marks *= _F32(1.0) - cover * _F32(0.7)
    if f.atelectasis > 0:
        d = _Draws(draws, "atelectasis")
        s = f.atelectasis
        dome = g.right * _F32(a.dome_right - a.dome_left) + _F32(a.dome_left)
        bands = np.zeros_like(air)
        for k in range(1 + int(s > 0.6)):
            centre = (
                dome
                - _F32(d.uniform(0.06, 0.12) + 0.08 * k)
                + (au - _F32(0.45)) * _F32(d.uniform(-0.25, 0.1))
            )
            centre += np.square(au - _F32(0.45)) * _F32(d.uniform(-0.4, 0.4))
            band = _band(v - centre, 0.012 + 0.022 * s)
            np.clip(band * _F32(1.6), 0.0, 1.0, out=band)
            lo = d.uniform(0.22, 0.4)
            band *= _step(au - _F32(lo), 0.08) * _step(_F32(lo + d.uniform(0.25, 0.4)) - au, 0.12)
            band *= _F32(1.0) - g.right * _F32(d.uniform(0.0, 0.6))
            np.maximum(bands, band, out=bands)
        bands *= _F32(0.5 + 0.45 * s)
        air *= _F32(1.0) - bands
        density += bands * _F32(0.04)
    if f.pneumothorax > 0:
        d = _Draws(draws, "pneumothorax")
        p = f.pneumothorax
        gap = 0.04 + 0.22 * p + d.uniform(-0.01, 0.01)
        cx, ax = a.lung_cx - gap / 2, a.lung_ax - gap / 2
        inner_q = _lung_q(au, v, cx, ax, a.lung_cy + gap * 0.8, a.lung_ay - gap * 0.8)
        upper = _step(_F32(0.3 + 0.3 * p) - v, 0.25) * _side_weight(g, f.pneumothorax_side)
        rim = _step(inner_q - _F32(1.0), 0.03) * g.lung * upper
        line = _band(inner_q - _F32(1.0), 0.045) * g.lung * upper
        line *= _step(au - _F32(a.lung_cx - 0.1), 0.1)  # the pleural line shows laterally and at the apex
        marks *= _F32(1.0) - rim
        density -= rim * _F32(0.10)
        density += line * _F32(0.10)
        air *= _F32(1.0) - (_F32(1.0) - rim) * upper * _F32(0.12 * p)  # partially collapsed lung
    return air, marks


# ----------------------------------------------------------------------------------------------------
# Lateral view
# ----------------------------------------------------------------------------------------------------


def _lateral_density(f: CxrFindings, u, v, d: _Draws, draws: np.ndarray, marks, patchy):
    """Side projection (patient facing image left): returns the full density map and geometry."""
    front = d.uniform(-0.8, -0.7)
    back = d.uniform(0.8, 0.92)
    soft = d.uniform(0.5, 0.56) + 0.08 * f.habitus
    insp = d.uniform(-0.05, 0.05) + 0.1 * f.hyperinflation
    # Body: anterior chest wall (the neck recedes above it) and the back; raised arms over the apex.
    anterior = np.square(np.clip(_F32(-0.8) - v, 0.0, None)) * _F32(1.2)
    anterior += np.square(v - _F32(0.1)) * _F32(0.06)
    anterior += _F32(front)
    body = _step(u - anterior, 0.03) * _step(_F32(back) - u - np.square(v) * _F32(0.08), 0.03)
    depth = np.square(u * _F32(1.2))
    depth *= _F32(-0.08)
    depth += _F32(soft + 0.08)
    density = body * depth
    arms = _step(_F32(-0.5) - v, 0.25) * _step(_F32(0.35) - u, 0.4)
    density += arms * body * _F32(0.08)
    # Both lungs superimposed, the sloping diaphragm and the posterior costophrenic sulcus.
    lung_q = np.square((u - _F32(0.05)) * _F32(1.0 / 0.74))
    lung_q += np.square((v - _F32(0.3 + insp * 0.5)) * _F32(1.0 / (1.05 - insp * 0.5)))
    outline = _step(_F32(1.0) - lung_q, 0.2)
    dome = np.square(u + _F32(0.1))
    dome *= _F32(0.35)
    dome += u * _F32(0.12)
    dome += _F32(0.342 + insp)
    above = _step(dome - v, 0.02)
    lung = outline * above
    density += (_F32(1.0) - above) * body * _F32(0.1)
    density += _band(v - dome - _F32(0.035), 0.012) * outline * _F32(0.03)  # the other hemidiaphragm
    # Heart anteriorly on the diaphragm (grows backwards with cardiomegaly), hilum, descending aorta.
    cm = f.cardiomegaly
    heart = _ellipse(
        u,
        v,
        -0.36 + 0.1 * cm + d.uniform(-0.03, 0.03),
        0.33 + d.uniform(-0.03, 0.03),
        0.4 + 0.14 * cm,
        0.3 + 0.05 * cm,
        0.25,
        tilt=0.6,
    )
    occupied = heart
    air = lung * (_F32(1.0) - occupied)
    density += heart * above * _F32(0.1)
    density += _ellipse(u, v, 0.05, -0.05, 0.12, 0.14, 0.6) * _F32(0.05)
    # Trachea angling backwards as it descends to the carina.
    trachea = _band(u - v * _F32(0.13) - _F32(0.04), 0.05)
    np.clip(trachea * _F32(2.0), 0.0, 1.0, out=trachea)
    trachea *= _step(_F32(-0.12) - v, 0.05) * body
    density -= trachea * _F32(0.1)
    # Spine (vertebral bodies, discs, posterior elements; lower vertebrae look more lucent), sternum, ribs.
    axis = np.square(v - _F32(0.1)) * _F32(0.1) + _F32(0.52)
    cycle = _tri_wave((v + _F32(1.3)) * _F32(1.0 / 0.12))
    vert = _band(u - axis, 0.12)
    np.clip(vert * _F32(3.0), 0.0, 1.0, out=vert)
    vert *= _F32(0.6) + _F32(0.4) * np.clip(cycle * _F32(4.0), 0.0, 1.0)
    vert *= _F32(0.16) - v * _F32(0.04)
    bones = vert
    bones += _band(u - axis - _F32(0.2), 0.07) * _F32(0.05)
    sternum = (
        _band(u - anterior - _F32(0.05), 0.03) * _step(v + _F32(0.66), 0.05) * _step(_F32(0.25) - v, 0.05)
    )
    bones += sternum * _F32(0.08)
    ribs = _tri_wave((v - u * _F32(0.3)) * _F32(1.0 / 0.12))
    ribs -= _F32(0.6)
    np.clip(ribs * _F32(3.0), 0.0, 1.0, out=ribs)
    ribs *= _step(u - _F32(0.1), 0.4) * lung
    bones += ribs * _F32(0.03)
    bones *= body
    density += bones
    g = _Geometry(u, v, u, np.ones_like(u), np.ones_like(u), lung, above, occupied, lung_q)
    air, marks = _apply_lateral_findings(f, g, air, density, marks, draws, patchy)
    return density, air, marks, g


def _unilateral(side: str) -> float:
    """Lateral films superimpose both lungs: one-sided processes show at reduced contrast."""
    return 1.0 if side == "bilateral" else 0.7


def _apply_lateral_findings(f: CxrFindings, g: _Geometry, air, density, marks, draws, patchy):
    u, v = g.u, g.v
    if f.effusion > 0:
        e = f.effusion
        level = np.square(np.clip((u - _F32(0.1)) * _F32(2.0), 0.0, 1.0))
        level *= _F32(-(0.1 + 0.12 * e))
        level += _F32(0.68 - 0.05 - 0.6 * e) + np.clip(-u, 0.0, None) * _F32(0.15)
        fluid = _step(v - level, 0.05) * _step(_F32(1.0) - g.lung_q, 0.12)
        fluid *= _F32(_unilateral(f.effusion_side))
        density += fluid * air * _F32(0.1)
        air *= _F32(1.0) - fluid
    if f.opacity > 0:
        d = _Draws(draws, "opacity")
        o = f.opacity
        lower = d.chance(0.7)
        cu, cv = (d.uniform(0.15, 0.45), d.uniform(0.05, 0.3)) if lower else (-0.25, d.uniform(0.0, 0.12))
        radius = 0.13 + 0.16 * o
        blob = _ellipse(u, v, cu, cv, radius, radius * 0.9, 0.9)
        blob *= np.clip(patchy * _F32(0.35) + _F32(0.55), 0.0, 1.0)
        blob *= _F32((0.45 + 0.45 * o) * _unilateral(f.opacity_side))
        air *= _F32(1.0) - blob
        marks *= _F32(1.0) - blob
    if f.edema > 0:
        e = f.edema
        haze = _ellipse(u, v, 0.02, -0.02, 0.45, 0.5, 1.2) * _F32(0.2 + 0.45 * e)
        haze += _F32(0.12 * e)
        air *= _F32(1.0) - haze
        marks *= _F32(1.0 + 1.2 * e)
    if f.diffuse > 0:
        d = _Draws(draws, "diffuse")
        x = f.diffuse
        depth = (v + _F32(0.75)) * _F32(1.0 / 1.4) + patchy * _F32(0.15)
        depth += u * _F32(0.25)  # dependent (posterior) lung first
        cover = _step(depth - _F32(1.05 - 1.35 * x), 0.45) * _F32((0.3 + 0.55 * x) * d.uniform(0.9, 1.0))
        air *= _F32(1.0) - cover
        marks *= _F32(1.0) - cover * _F32(0.7)
    if f.atelectasis > 0:
        d = _Draws(draws, "atelectasis")
        s = f.atelectasis
        centre = (u * _F32(0.25)) + _F32(0.2 + d.uniform(-0.05, 0.05))
        band = _band(v - centre, 0.015 + 0.03 * s) * _step(u + _F32(0.1), 0.1) * _step(_F32(0.55) - u, 0.1)
        band *= _F32(0.5 + 0.4 * s)
        air *= _F32(1.0) - band
    if f.pneumothorax > 0:
        p = f.pneumothorax
        gap = 0.04 + 0.2 * p
        inner_q = np.square((u - _F32(0.05)) * _F32(1.0 / (0.74 - gap * 0.5)))
        inner_q += np.square((v - _F32(0.3 + gap)) * _F32(1.0 / (1.05 - gap)))
        upper = _step(_F32(-0.35 + 0.2 * p) - v, 0.2) * _F32(_unilateral(f.pneumothorax_side))
        rim = _step(inner_q - _F32(1.0), 0.03) * g.lung * upper
        line = _band(inner_q - _F32(1.0), 0.045) * g.lung * upper
        marks *= _F32(1.0) - rim
        density -= rim * _F32(0.06)
        density += line * _F32(0.09)
    return air, marks


# ----------------------------------------------------------------------------------------------------
# Devices, ECG electrodes and markers
# ----------------------------------------------------------------------------------------------------


class _Overlay:
    """Radio-opaque material: anti-aliased curves (bilinear splats) and small filled shapes.

    Everything is accumulated inside the bounding box of what was drawn, so a film without devices
    costs nothing and thin devices cost little.
    """

    def __init__(self, frame: _Frame, pose: _Pose) -> None:
        self.frame, self.pose = frame, pose
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        self._shapes: list[tuple] = []

    def curve(self, points_uv, width_px: float, value: float, smooth: int = 3) -> None:
        """A smooth curve through control points (u, v), ``width_px`` wide, of opacity ``value``."""
        pts = np.asarray(points_uv, dtype=np.float64)
        for _ in range(smooth):  # Chaikin corner cutting
            cut = np.empty((2 * len(pts) - 2, 2))
            cut[0::2] = 0.75 * pts[:-1] + 0.25 * pts[1:]
            cut[1::2] = 0.25 * pts[:-1] + 0.75 * pts[1:]
            pts = np.vstack([pts[:1], cut, pts[-1:]])
        rows, cols = self.pose.to_pixels(self.frame, pts[:, 0], pts[:, 1])
        step_r, step_c = np.diff(rows), np.diff(cols)
        arc = np.zeros(len(rows))
        np.cumsum(np.hypot(step_r, step_c), out=arc[1:])
        t = np.arange(0.0, arc[-1] + 0.25, 0.5)  # samples every half pixel
        rows, cols = np.interp(t, arc, rows), np.interp(t, arc, cols)
        if width_px > 1:  # parallel offsets along the local normal
            seg = np.minimum(np.searchsorted(arc, t, side="right") - 1, len(step_r) - 1)
            norm = np.hypot(step_r, step_c)[seg] + 1e-9
            offsets = np.arange(-(width_px - 1) / 2, (width_px - 1) / 2 + 1e-6, 0.5)[:, None]
            rows, cols = rows + offsets * (step_c[seg] / norm), cols - offsets * (step_r[seg] / norm)
            weight = value * 0.5 * width_px / len(offsets)
        else:
            weight = value * 0.5
        self._add_points(rows.ravel(), cols.ravel(), weight)

    def dot(self, centre_uv, radius_px: float, value: float) -> None:
        """A small round metal dot (electrode snap, side-port marker, wire knot)."""
        r, c = self.pose.to_pixels(self.frame, np.array([centre_uv[0]]), np.array([centre_uv[1]]))
        grid = np.arange(-radius_px, radius_px + 1e-6, 0.5)
        dr, dc = np.meshgrid(grid, grid)
        inside = dr**2 + dc**2 <= radius_px**2
        self._add_points(r[0] + dr[inside], c[0] + dc[inside], value * 0.25)

    def _add_points(self, rows: np.ndarray, cols: np.ndarray, weight: float) -> None:
        self._rows.append(rows)
        self._cols.append(cols)
        self._weights.append(np.full(rows.shape, weight))

    def ring(self, centre_uv, radii_uv, width_px: float, value: float) -> None:
        """An elliptical loop (sternal wire, ECG electrode rim)."""
        angle = np.linspace(0.0, 2 * math.pi, 48)
        pts = np.stack(
            [centre_uv[0] + radii_uv[0] * np.cos(angle), centre_uv[1] + radii_uv[1] * np.sin(angle)], 1
        )
        self.curve(pts, width_px, value, smooth=0)

    def blob(self, centre_uv, radii_uv, value: float, power: float = 2.0) -> None:
        """A filled super-ellipse (power 2 = ellipse, larger = rounded box)."""
        self._shapes.append((centre_uv, radii_uv, value, power))

    def add_to(self, density: np.ndarray, gain: float, blur: int = 0) -> None:
        """Add ``gain`` x the (saturating, optionally box-blurred) overlay to ``density`` in place."""
        if not self._rows and not self._shapes:
            return
        frame = self.frame
        layer = _buffer("overlay", (frame.rows, frame.cols))
        box = [frame.rows, 0, frame.cols, 0]
        if self._rows:
            self._splat(
                layer,
                np.concatenate(self._rows),
                np.concatenate(self._cols),
                np.concatenate(self._weights),
                box,
            )
        for centre, radii, value, power in self._shapes:
            self._stamp(layer, centre, radii, value, power, box)
        r0, r1, c0, c1 = box
        if r0 >= r1 or c0 >= c1:
            return
        if blur > 1:
            r0, r1 = max(0, r0 - blur), min(frame.rows, r1 + blur)
            c0, c1 = max(0, c0 - blur), min(frame.cols, c1 + blur)
            self._grow(layer, box, r0, r1, c0, c1)
        patch = layer[r0:r1, c0:c1]
        np.minimum(patch, _F32(1.0), out=patch)
        if blur > 1:
            patch = ndimage.uniform_filter(patch, blur, mode="nearest")
        patch *= _F32(gain)
        density[r0:r1, c0:c1] += patch

    def _splat(self, layer, rows, cols, weights, box) -> None:
        r0f, c0f = np.floor(rows), np.floor(cols)
        fr, fc = rows - r0f, cols - c0f
        ri = np.concatenate([r0f, r0f + 1, r0f, r0f + 1]).astype(np.int64)
        ci = np.concatenate([c0f, c0f, c0f + 1, c0f + 1]).astype(np.int64)
        w = np.concatenate([(1 - fr) * (1 - fc), fr * (1 - fc), (1 - fr) * fc, fr * fc]) * np.tile(weights, 4)
        ok = (ri >= 0) & (ri < self.frame.rows) & (ci >= 0) & (ci < self.frame.cols)
        if not ok.any():
            return
        ri, ci, w = ri[ok], ci[ok], w[ok]
        r0, r1, c0, c1 = int(ri.min()), int(ri.max()) + 1, int(ci.min()), int(ci.max()) + 1
        local = np.bincount((ri - r0) * (c1 - c0) + (ci - c0), w, (r1 - r0) * (c1 - c0))
        self._grow(layer, box, r0, r1, c0, c1)
        layer[r0:r1, c0:c1] += local.reshape(r1 - r0, c1 - c0).astype(_F32)

    @staticmethod
    def _grow(layer, box, r0, r1, c0, c1) -> None:
        """Extend the drawn bounding box, zeroing the scratch layer where it is newly covered."""
        if box[0] >= box[1]:
            layer[r0:r1, c0:c1] = 0.0
            box[:] = [r0, r1, c0, c1]
            return
        n0, n1, m0, m1 = min(box[0], r0), max(box[1], r1), min(box[2], c0), max(box[3], c1)
        old = layer[box[0] : box[1], box[2] : box[3]].copy()
        layer[n0:n1, m0:m1] = 0.0
        layer[box[0] : box[1], box[2] : box[3]] = old
        box[:] = [n0, n1, m0, m1]

    def _stamp(self, layer, centre, radii, value, power, box) -> None:
        frame, pose = self.frame, self.pose
        rc, cc = pose.to_pixels(frame, np.array([centre[0]]), np.array([centre[1]]))
        reach = int(max(radii) * frame.ppu * max(pose.sx, pose.sy) * 1.5) + 2
        r0, r1 = max(0, int(rc[0]) - reach), min(frame.rows, int(rc[0]) + reach + 1)
        c0, c1 = max(0, int(cc[0]) - reach), min(frame.cols, int(cc[0]) + reach + 1)
        if r0 >= r1 or c0 >= c1:
            return
        self._grow(layer, box, r0, r1, c0, c1)
        u, v = pose.uv(frame, frame.x[:, c0:c1], frame.y[r0:r1, :])
        q = np.abs((u - _F32(centre[0])) * _F32(1.0 / radii[0])) ** _F32(power)
        q += np.abs((v - _F32(centre[1])) * _F32(1.0 / radii[1])) ** _F32(power)
        mask = _step(_F32(1.0) - q, 2.0 / (min(radii) * frame.ppu))
        np.maximum(layer[r0:r1, c0:c1], mask * _F32(value), out=layer[r0:r1, c0:c1])


def _frontal_devices(ov: _Overlay, f: CxrFindings, draws: np.ndarray, a: _FrontalAnatomy, ap: bool) -> None:
    """Tubes, lines and hardware in their usual positions on a frontal film."""
    if "ett" in f.devices:
        d = _Draws(draws, "ett")
        tip = a.carina - d.uniform(0.17, 0.33)  # ~3-6 cm above the carina
        top = d.uniform(-0.04, 0.04)
        for wall in (-0.022, 0.022):
            ov.curve([(top + wall, -1.4), (wall, -0.9), (0.005 + wall, tip)], 1.0, 0.18)
        ov.curve([(top - 0.012, -1.4), (-0.012, -0.9), (-0.007, tip)], 1.5, 0.6)
    if "ng_tube" in f.devices:
        d = _Draws(draws, "ng_tube")
        end_u, end_v = d.uniform(0.25, 0.45), a.dome_left + d.uniform(0.12, 0.3)
        path = [
            (d.uniform(-0.02, 0.08), -1.4),
            (0.05, -0.6),
            (0.05, 0.1),
            (0.08, a.dome_left + 0.05),
            (end_u * 0.7, end_v + 0.04),
            (end_u, end_v),
        ]
        ov.curve(path, 1.5, 0.5)
        ov.dot((end_u * 0.7, end_v + 0.04), 1.5, 0.7)  # side-port marker
    if "central_line" in f.devices:
        d = _Draws(draws, "central_line")
        tip = (-0.07, a.carina + d.uniform(-0.05, 0.12))
        kind = d.integer(3)
        if kind == 0:  # right internal jugular
            path = [(-0.3, -1.4), (-0.17, -0.85), (-0.09, -0.55), tip]
        elif kind == 1:  # right subclavian
            path = [(-0.7, -0.66), (-0.35, -0.62), (-0.12, -0.5), tip]
        else:  # left subclavian / brachiocephalic
            path = [(0.72, -0.66), (0.35, -0.6), (0.05, -0.45), tip]
        ov.curve(path, 1.3, 0.45)
    if "pacemaker" in f.devices:
        d = _Draws(draws, "pacemaker")
        box = (d.uniform(0.45, 0.62), d.uniform(-0.66, -0.52))
        ov.blob(box, (0.1, 0.075), 1.0, power=4.0)
        ra = (-0.1, a.heart_cy - 0.12)
        rv = (a.heart_ctr * 0.5 + d.uniform(-0.05, 0.05), a.heart_cy + 0.15)
        ov.curve(
            [box, (0.35, -0.62), (0.05, -0.5), (-0.06, -0.2), (ra[0] - 0.02, ra[1] - 0.05), ra], 1.5, 0.8
        )
        ov.curve([box, (0.33, -0.58), (0.04, -0.47), (-0.05, -0.15), (0.0, a.heart_cy), rv], 1.5, 0.8)
    if "sternal_wires" in f.devices:
        d = _Draws(draws, "sternal_wires")
        n = 5 + d.integer(3)
        top, bottom = d.uniform(-0.62, -0.52), d.uniform(0.05, 0.18)
        for k in range(n):
            cv = top + (bottom - top) * k / (n - 1) + d.uniform(-0.015, 0.015)
            cu = d.uniform(-0.015, 0.025)
            ov.ring((cu, cv), (0.035, 0.013), 1.6, 0.9)
            ov.dot((cu + 0.04, cv + 0.005), 1.5, 0.9)  # twisted knot
    if ap:
        d = _Draws(draws, "ecg")
        if d.chance(0.6):
            for _ in range(2 + d.integer(3)):
                centre = (d.uniform(-0.9, 0.9), d.uniform(-0.85, 0.6))
                ov.dot(centre, 1.5, 0.8)  # electrode snap
                end = (centre[0] + d.uniform(-0.5, 0.5), 1.3)
                if d.chance(0.6):  # its lead wire
                    ov.curve(
                        [centre, ((centre[0] + end[0]) / 2 + d.uniform(-0.2, 0.2), 0.5), end], 1.0, 0.3, 2
                    )


def _lateral_devices(ov: _Overlay, f: CxrFindings, draws: np.ndarray) -> None:
    """Devices projected on a lateral film."""
    if "ett" in f.devices:
        d = _Draws(draws, "ett")
        tip_v = -0.4 - d.uniform(0.0, 0.15)
        path = [(-0.25, -1.4), (-0.12, -0.8), (0.15 * tip_v, tip_v)]
        ov.curve(path, 4.0, 0.1)
        ov.curve(path, 1.2, 0.5)
    if "ng_tube" in f.devices:
        d = _Draws(draws, "ng_tube")
        path = [
            (-0.2, -1.4),
            (0.05, -0.8),
            (0.3, -0.2),
            (0.35, 0.3),
            (0.1, 0.55),
            (d.uniform(-0.2, 0.0), 0.65),
        ]
        ov.curve(path, 1.5, 0.45)
    if "central_line" in f.devices:
        d = _Draws(draws, "central_line")
        ov.curve([(-0.3, -1.4), (-0.15, -0.7), (-0.05, -0.3 + d.uniform(-0.05, 0.1))], 1.3, 0.4)
    if "pacemaker" in f.devices:
        d = _Draws(draws, "pacemaker")
        box = (-0.82 + d.uniform(-0.03, 0.03), -0.55 + d.uniform(-0.05, 0.05))
        ov.blob(box, (0.04, 0.1), 1.0, power=4.0)
        ov.curve([box, (-0.5, -0.6), (-0.1, -0.35), (-0.2, 0.05), (-0.35, 0.3)], 1.5, 0.8)
        ov.curve([box, (-0.5, -0.58), (-0.1, -0.3), (-0.1, 0.0), (-0.05, 0.1)], 1.5, 0.8)
    if "sternal_wires" in f.devices:
        d = _Draws(draws, "sternal_wires")
        n = 5 + d.integer(3)
        for k in range(n):
            cv = -0.55 + 0.7 * k / (n - 1)
            ov.ring((-0.72 + 0.08 * k / n, cv), (0.01, 0.025), 1.5, 0.9)


_GLYPHS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}


def _stamp_marker(image: np.ndarray, letter: str, d: _Draws) -> None:
    """Lead side marker (a bright letter in a corner), as on most films."""
    rows, cols = image.shape
    glyph = np.array([[c == "1" for c in line] for line in _GLYPHS[letter]])
    scale = max(1, round(cols / 110))
    mark = np.kron(glyph, np.ones((scale, scale), dtype=bool))
    h, w = mark.shape
    if h + 4 > rows or w + 4 > cols:
        return
    r0 = d.integer(max(1, rows // 8)) + 2
    c0 = cols - w - 3 - d.integer(max(1, cols // 6)) if d.chance(0.6) else 2 + d.integer(max(1, cols // 6))
    image[r0 : r0 + h, c0 : c0 + w][mark] = 242


# ----------------------------------------------------------------------------------------------------
# Degradation and output mapping
# ----------------------------------------------------------------------------------------------------


def _contrast_retained(artifact: float) -> float:
    """Fraction of the image contrast that survives: 1 up to 0.4, 0.5 at 0.6, none from 0.8 on."""
    return 1.0 - _smoothstep(0.4, 0.8, artifact)


@dataclass(frozen=True)
class _ArtifactPlan:
    """Which film artifacts this image gets and how strong they are (drawn whatever ``artifact`` is)."""

    strength: float
    ghost_shift: int  # motion: full-resolution pixels a ghost copy is displaced by (0 = none)
    ghost_axis: int
    blur: int  # box blur size in full-resolution pixels (<= 1 = none)
    grid_period: float  # anti-scatter grid line period in pixels (0 = none)
    grid_phase: float
    grid_vertical: bool
    level: float  # grey level (density) an over/under-exposed film collapses to
    noise_rows: tuple[int, int]  # texture window offsets for the heavy noise
    noise_cols: tuple[int, int]
    cutoff_edge: int  # -1 = none, else top/bottom/left/right
    cutoff_depth: float
    cutoff_value: float


def _artifact_plan(artifact: float, d: _Draws, cols: int) -> _ArtifactPlan:
    ghost, shift, axis = d.chance(0.2 + 0.5 * artifact), d.uniform(0.5, 1.0), d.integer(2)
    blurred, spread = d.chance(0.4 + 0.4 * artifact), d.uniform(0.01, 0.06)
    grid, period, phase, vertical = (
        d.chance(0.3 + 0.3 * artifact),
        d.uniform(2.2, 4.5),
        d.uniform(0, 6.28),
        d.chance(0.7),
    )
    level = d.uniform(0.15, 0.75)
    offsets = [d.uniform() for _ in range(4)]
    cut, depth, edge, value = (
        d.chance(0.15 + 0.45 * artifact),
        d.uniform(0.05, 0.1 + 0.3 * artifact),
        d.integer(4),
        d.uniform(0.0, 1.2),
    )
    return _ArtifactPlan(
        strength=artifact,
        ghost_shift=max(1, round((0.01 + 0.05 * artifact) * cols * shift)) if ghost else 0,
        ghost_axis=axis,
        blur=1 + round(artifact * spread * cols) if blurred else 0,
        grid_period=period if grid else 0.0,
        grid_phase=phase,
        grid_vertical=vertical,
        level=level,
        noise_rows=(offsets[0], offsets[1]),
        noise_cols=(offsets[2], offsets[3]),
        cutoff_edge=edge if cut else -1,
        cutoff_depth=depth,
        cutoff_value=value,
    )


def _degrade_half(stack: np.ndarray, plan: _ArtifactPlan) -> np.ndarray:
    """Motion ghosting and blur, applied to the half-resolution (density, markings) stack.

    Blur also fades the full-resolution lung markings (their amplitude map is blurred and damped).
    """
    if plan.ghost_shift:
        shift = max(1, plan.ghost_shift // 2)
        stack = stack * _F32(0.55) + np.roll(stack, shift, axis=1 + plan.ghost_axis) * _F32(0.45)
    size = plan.blur // 2
    if size > 1:
        stack = ndimage.uniform_filter(stack, (1, size, size), mode="nearest")
        stack[1] *= _F32(1.0 / (1.0 + 0.5 * size))
    return stack


def _degrade_full(density: np.ndarray, plan: _ArtifactPlan, tex: _Textures) -> np.ndarray:
    """Grid lines, exposure/contrast collapse, heavy noise and collimation cut-off at full resolution."""
    rows, cols = density.shape
    a = plan.strength
    if plan.grid_period:
        axis = np.arange(cols if plan.grid_vertical else rows, dtype=_F32)
        lines = np.cos(axis * _F32(2 * math.pi / plan.grid_period) + _F32(plan.grid_phase)) * _F32(0.08 * a)
        density += lines[None, :] if plan.grid_vertical else lines[:, None]
    c = _contrast_retained(a)
    if c < 1.0:
        density *= _F32(c)
        density += _F32((1.0 - c) * plan.level)
    sigma = 0.3 * a**2
    if sigma > 0.002:
        for field, r, q in (
            (tex.white, plan.noise_rows[0], plan.noise_cols[0]),
            (tex.grain, plan.noise_rows[1], plan.noise_cols[1]),
        ):
            r0 = min(int(r * (field.shape[0] - rows + 1)), field.shape[0] - rows)
            c0 = min(int(q * (field.shape[1] - cols + 1)), field.shape[1] - cols)
            density += field[r0 : r0 + rows, c0 : c0 + cols] * _F32(sigma * 0.7)
    if plan.cutoff_edge >= 0:  # collimation / partial cut-off of one edge
        value = _F32(plan.cutoff_value)
        depth_r, depth_c = int(plan.cutoff_depth * rows), int(plan.cutoff_depth * cols)
        if plan.cutoff_edge == 0:
            density[:depth_r] = value
        elif plan.cutoff_edge == 1:
            density[rows - depth_r :] = value
        elif plan.cutoff_edge == 2:
            density[:, :depth_c] = value
        else:
            density[:, cols - depth_c :] = value
    return density


def _to_uint8(density: np.ndarray, d: _Draws, ap: bool) -> np.ndarray:
    """Film characteristic curve (exposure, contrast, gamma) applied through a lookup table."""
    low = d.uniform(-0.02, 0.04) + (0.03 if ap else 0.0)
    gain = d.uniform(1.02, 1.15) * (0.92 if ap else 1.0)
    gamma = d.uniform(0.85, 1.15)
    grid = np.linspace(0.0, _LUT_MAX_DENSITY, _LUT_SIZE)
    lut = (255.0 * np.clip((grid - low) * gain, 0.0, 1.0) ** gamma + 0.5).astype(np.uint8)
    index = _buffer("lut-index", density.shape)
    np.multiply(density, _F32((_LUT_SIZE - 1) / _LUT_MAX_DENSITY), out=index)
    np.clip(index, 0, _LUT_SIZE - 1, out=index)
    codes = _buffer("lut-codes", density.shape, np.uint16)
    np.copyto(codes, index, casting="unsafe")
    return lut[codes]


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


def _pose(d: _Draws, view: str) -> _Pose:
    ap = view == "AP"
    wobble = 1.6 if ap else 1.0
    size = d.uniform(0.92, 1.06)
    return _Pose(
        tx=d.uniform(-0.04, 0.04) * wobble,
        ty=d.uniform(0.0, 0.08) * wobble,
        angle=math.radians(d.uniform(-3.0, 3.0) * wobble),
        sx=size * d.uniform(0.96, 1.04),
        sy=size * d.uniform(0.96, 1.04),
    )


def _vessel_window(frame: _Frame, pose: _Pose, kind: str, d: _Draws) -> np.ndarray:
    bank = _vessel_bank(frame.rows, frame.cols, kind)
    pad = _vessel_pad(frame.cols)
    k = d.integer(len(bank))
    dr = min(max(round(pose.ty * frame.ppu), -pad), pad)
    dc = min(max(round(pose.tx * frame.ppu), -pad), pad)
    return bank[k, pad - dr : pad - dr + frame.rows, pad - dc : pad - dc + frame.cols]


def render_cxr(
    findings: CxrFindings, view: str, rows: int, cols: int, rng: np.random.Generator, artifact: float = 0.0
) -> np.ndarray:
    """A plausible grey-scale chest radiograph, uint8 array of shape (rows, cols).

    ``view`` is one of ``VIEWS`` (AP, PA, LATERAL). Patient anatomy, exposure, device placement and
    artifact choices are drawn from ``rng`` (a fixed number of draws, so the same generator state gives the
    same patient whatever the findings). ``artifact`` in [0, 1] is the strength of degradation; at 0.8 and
    above the findings are essentially invisible.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if rows < 8 or cols < 8:
        raise ValueError(f"image too small: {rows}x{cols}")
    if not 0.0 <= artifact <= 1.0:
        raise ValueError(f"artifact must be in [0, 1], got {artifact}")
    draws = rng.random(_N_DRAWS)
    frame, half = _frame(rows, cols), _half_frame(rows, cols)
    tex = _textures(rows, cols)
    anat = _Draws(draws, "anatomy")
    pose = _pose(anat, view)
    # Smooth anatomy and findings at half resolution: density, aerated lung and lung-marking visibility.
    u, v = pose.uv(half)
    patchy = _window(tex.patchy, half.rows, half.cols, anat)
    marks = np.ones((half.rows, half.cols), dtype=_F32)
    overlay = _Overlay(frame, pose)
    kind = "lateral" if view == "LATERAL" else "frontal"
    if view == "LATERAL":
        density, air, marks, _ = _lateral_density(findings, u, v, anat, draws, marks, patchy)
        air_depth, vessel_gain = anat.uniform(0.3, 0.36), anat.uniform(0.08, 0.12)
        air_depth *= (1.0 + 0.2 * findings.hyperinflation) * (1.0 - 0.25 * findings.habitus)
        _lateral_devices(overlay, findings, draws)
    else:
        a = _frontal_anatomy(anat, view, findings)
        g = _frontal_geometry(u, v, a)
        density, air = _frontal_density(g, a)
        air, marks = _apply_frontal_findings(findings, g, a, air, density, marks, draws, patchy, view == "AP")
        air_depth, vessel_gain = a.air, a.vessel_gain
        _frontal_devices(overlay, findings, draws, a, view == "AP")
    # Aerated lung is dark; its markings (vessels, interstitium) show only against air, at full resolution.
    marks *= air
    marks *= _F32(vessel_gain)
    density -= air * _F32(air_depth)
    plan = _artifact_plan(artifact, _Draws(draws, "artifact"), cols) if artifact > 0 else None
    stack = np.stack([density, marks])
    if plan is not None:
        stack = _degrade_half(stack, plan)
    up = _upsample2(stack)[:, :rows, :cols]
    density, scratch = up[0], up[1]
    scratch *= _vessel_window(frame, pose, kind, anat)
    density += scratch
    grain = (0.012 if view != "AP" else 0.02) * (1.0 + 1.5 * findings.habitus)  # obese: noisier film
    np.multiply(_window(tex.grain, rows, cols, anat), _F32(grain), out=scratch)
    density += scratch
    overlay.add_to(density, 0.55, blur=plan.blur if plan is not None else 0)
    if plan is not None:
        density = _degrade_full(density, plan, tex)
    exposure = _Draws(draws, "exposure")
    image = _to_uint8(density, exposure, view == "AP")
    if exposure.chance(0.9 if view == "AP" else 0.6):
        letter = "L" if view == "LATERAL" or exposure.chance(0.7) else "R"
        _stamp_marker(image, letter, exposure)
    return image


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """Deterministic baseline JPEG bytes (PIL), no EXIF/timestamps."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 image, got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buffer.getvalue()
