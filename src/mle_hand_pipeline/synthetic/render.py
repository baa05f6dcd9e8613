"""Procedural drawing of hands: z-buffered shaded capsules and palms, backgrounds, occluders, labels.

Everything is drawn into a :class:`Canvas` at ``supersample`` times the output resolution and
box-filtered down, which anti-aliases the edges for the price of a few extra pixels. The canvas keeps
a per-pixel depth (metres, camera z) and an RHD part label next to the colour, so that nearer parts
win wherever primitives overlap (the per-pixel form of the painter's algorithm, which also gets
interpenetrating parts right) and visibility can be read back exactly.

Coordinates: pixel centres sit at integer coordinates (OpenCV convention). A supersampled canvas
uses ``K_ss = S @ K`` with the principal point shifted by ``(s - 1) / 2`` so that averaging each
``s x s`` block lands exactly on the output pixel centre.

Labels follow RHD: 0 background, 1 person (arms, body), 2-16 left finger parts (3 per finger, thumb
first, palm to tip), 17 left palm, 18-32 right finger parts, 33 right palm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mle_hand_pipeline.keypoints import FINGER_KEYPOINTS, FINGERS

LABEL_BACKGROUND = 0
LABEL_PERSON = 1
LEFT_LABELS = (2, 17)  # inclusive range of the left hand's labels; palm = 17
RIGHT_LABELS = (18, 33)  # inclusive range of the right hand's labels; palm = 33

# Skin tones (RGB), light to dark, roughly spanning the Fitzpatrick scale; a hand's colour is drawn
# between two neighbours and jittered so that no two hands share an exact colour.
SKIN_TONES = np.array(
    [
        [250, 218, 196],
        [238, 196, 170],
        [224, 172, 138],
        [205, 150, 112],
        [176, 120, 84],
        [141, 90, 58],
        [104, 66, 44],
        [72, 46, 32],
    ],
    dtype=np.float64,
)


def hand_labels(is_left: bool) -> tuple[int, int]:
    """Inclusive (first, palm) label range of one hand; the palm label is the last of the range."""
    return LEFT_LABELS if is_left else RIGHT_LABELS


def finger_part_label(is_left: bool, finger: int, segment: int) -> int:
    """RHD label of ``segment`` (0 palm-side .. 2 tip-side) of ``finger`` (0 thumb .. 4 pinky)."""
    return hand_labels(is_left)[0] + 3 * finger + segment


def sample_skin(rng: np.random.Generator) -> np.ndarray:
    """(3,) float RGB skin colour in 0..255."""
    i = rng.integers(0, len(SKIN_TONES) - 1)
    w = rng.uniform()
    tone = (1.0 - w) * SKIN_TONES[i] + w * SKIN_TONES[i + 1]
    return np.clip(tone * rng.uniform(0.92, 1.06) + rng.normal(0.0, 6.0, size=3), 0, 255)


def sample_light(rng: np.random.Generator) -> np.ndarray:
    """(3,) unit vector from the surface towards the light, camera frame; lit mostly from the front."""
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8), -1.0])
    return light / np.linalg.norm(light)


@dataclass
class Canvas:
    """Supersampled drawing buffers.

    Attributes:
        size: output side length in pixels (square images).
        supersample: drawing resolution factor ``s``; buffers are ``(size * s, size * s)``.
        K: (3, 3) intrinsics of the supersampled canvas.
        colour: (H, W, 3) float32 RGB 0..255 of the nearest surface.
        depth: (H, W) float32 camera z (metres) of the nearest surface, ``inf`` where empty.
        label: (H, W) uint8 RHD label of the nearest surface.
        light: (3,) unit light direction (surface to light), camera frame.
        ambient: share of the light that does not depend on the surface orientation.
    """

    size: int
    supersample: int
    K: np.ndarray
    light: np.ndarray
    ambient: float = 0.5
    colour: np.ndarray = field(init=False)
    depth: np.ndarray = field(init=False)
    label: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = self.size * self.supersample
        self.colour = np.zeros((n, n, 3), dtype=np.float32)
        self.depth = np.full((n, n), np.inf, dtype=np.float32)
        self.label = np.zeros((n, n), dtype=np.uint8)

    @classmethod
    def for_camera(
        cls, size: int, K: np.ndarray, *, supersample: int, light: np.ndarray, ambient: float = 0.5
    ) -> Canvas:
        """Canvas whose intrinsics are the output intrinsics ``K`` scaled by ``supersample``."""
        s = supersample
        K_ss = np.array(K, dtype=np.float64).copy()
        K_ss[:2] *= s
        K_ss[:2, 2] += (s - 1) / 2.0
        return cls(size=size, supersample=s, K=K_ss, light=light, ambient=ambient)

    def to_pixels(self, xyz: np.ndarray) -> np.ndarray:
        """Canvas pixels (N, 2) of camera points (N, 3)."""
        uvw = xyz @ self.K.T
        return uvw[:, :2] / uvw[:, 2:3]

    def _window(self, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int, int, int] | None:
        n = self.size * self.supersample
        x0, y0 = max(int(np.floor(lo[0])), 0), max(int(np.floor(lo[1])), 0)
        x1, y1 = min(int(np.ceil(hi[0])) + 1, n), min(int(np.ceil(hi[1])) + 1, n)
        if x0 >= x1 or y0 >= y1:
            return None
        return x0, y0, x1, y1

    def _shade(self, base: np.ndarray, nx, ny, nz, gloss: float) -> np.ndarray:
        """Lambert + Blinn-Phong on per-pixel normals (camera frame, facing the camera: nz < 0)."""
        lx, ly, lz = (float(v) for v in self.light)
        lambert = np.maximum(nx * lx + ny * ly + nz * lz, 0.0)
        hx, hy, hz = lx, ly, lz - 1.0  # Blinn half vector between the light and the view (0, 0, -1)
        norm = (hx * hx + hy * hy + hz * hz) ** 0.5
        spec = np.maximum((nx * hx + ny * hy + nz * hz) / norm, 0.0) ** 24 * (255.0 * gloss)
        intensity = self.ambient + (1.0 - self.ambient) * lambert
        return base[None, :].astype(np.float32) * intensity[:, None] + spec[:, None]

    def _commit(self, win, inside, depth, colour, label: int) -> np.ndarray:
        """Write the pixels of ``inside`` that are nearer than what is there; return that mask."""
        x0, y0, x1, y1 = win
        zview = self.depth[y0:y1, x0:x1]
        win_mask = inside.copy()
        win_mask[inside] = depth < zview[inside]
        keep = win_mask[inside]
        zview[win_mask] = depth[keep]
        self.colour[y0:y1, x0:x1][win_mask] = colour[keep]
        self.label[y0:y1, x0:x1][win_mask] = label
        return win_mask

    def capsule(
        self,
        p0: np.ndarray,
        p1: np.ndarray,
        radius0: float,
        radius1: float,
        colour: np.ndarray,
        label: int,
        *,
        depth_bias: float = 0.0,
        gloss: float = 0.06,
    ) -> None:
        """Draw a tapered, round-ended, shaded tube between camera points ``p0`` and ``p1``.

        Args:
            p0, p1: (3,) end points, camera frame, metres (z > 0).
            radius0, radius1: tube radius (metres) at each end.
            colour: (3,) RGB 0..255 albedo.
            label: RHD label written where the tube is the nearest surface.
            depth_bias: metres added to the depth test only, to let touching parts win ties.
        """
        uv = self.to_pixels(np.stack([p0, p1]))
        z0, z1 = float(p0[2]), float(p1[2])
        f = self.K[0, 0]
        r0, r1 = f * radius0 / z0, f * radius1 / z1
        rmax = max(r0, r1) + 1.0
        win = self._window(uv.min(axis=0) - rmax, uv.max(axis=0) + rmax)
        if win is None:
            return
        x0, y0, x1, y1 = win
        # Broadcast a row and a column instead of building full coordinate grids: this runs ~60
        # times per image, so per-call overhead matters more than pixel count.
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(uv[0, 0])
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(uv[0, 1])
        dx, dy = np.float32(uv[1, 0] - uv[0, 0]), np.float32(uv[1, 1] - uv[0, 1])
        # A tube seen end-on projects to a disc: guard the axis parameter against a zero length.
        inv_len2 = np.float32(1.0 / max(float(dx * dx + dy * dy), 1e-6))
        t = (xs * dx + ys * dy) * inv_len2
        np.clip(t, 0.0, 1.0, out=t)
        ox = xs - t * dx
        oy = ys - t * dy
        rad = np.float32(r0) + t * np.float32(r1 - r0)
        inside = ox * ox + oy * oy < rad * rad
        if not inside.any():
            return
        rad_in = rad[inside]
        nx, ny = ox[inside] / rad_in, oy[inside] / rad_in
        nz = -np.sqrt(np.maximum(1.0 - nx * nx - ny * ny, 0.0))
        t_in = t[inside]
        # The visible surface bulges towards the camera by the local tube radius.
        depth = z0 + t_in * (z1 - z0) + (radius0 + t_in * (radius1 - radius0)) * nz + depth_bias
        shaded = self._shade(np.asarray(colour, dtype=np.float64), nx, ny, nz, gloss)
        self._commit(win, inside, depth.astype(np.float32), shaded.astype(np.float32), label)

    def surface(
        self,
        outline: np.ndarray,
        colour: np.ndarray,
        label: int,
        *,
        thickness: float = 0.0,
        bulge: float = 0.8,
        gloss: float = 0.04,
        centre: np.ndarray | None = None,
    ) -> None:
        """Draw a shaded polygon (triangle fan around a centre point) with per-pixel depth.

        Args:
            outline: (M, 3) polygon corners in order, camera frame, metres.
            colour: (3,) RGB 0..255 albedo.
            label: RHD label.
            thickness: metres by which the visible face lies in front of the polygon (half the
                palm's thickness: the keypoints sit at the bones, inside the flesh).
            bulge: how strongly normals tilt outwards towards the rim, for a cushion-like look.
            centre: (3,) apex of the fan; the outline's centroid if None.
        """
        centre = outline.mean(axis=0) if centre is None else np.asarray(centre, dtype=np.float64)
        verts = np.vstack([centre[None], outline])
        uv = self.to_pixels(verts)
        win = self._window(uv.min(axis=0), uv.max(axis=0))
        if win is None:
            return
        # Mean normal of the fan, turned towards the camera: the face we see.
        normal = np.zeros(3)
        for a, b in zip(outline, np.roll(outline, -1, axis=0), strict=True):
            normal += np.cross(a - centre, b - centre)
        norm = np.linalg.norm(normal)
        normal = normal / norm if norm > 0 else np.array([0.0, 0.0, -1.0])
        if normal[2] > 0:
            normal = -normal
        rim = float(np.max(np.linalg.norm(uv[1:] - uv[0], axis=1))) + 1e-6
        x0, y0, x1, y1 = win
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        inside = np.zeros(xs.shape, dtype=bool)
        inv_depth = np.zeros(xs.shape, dtype=np.float32)
        m = len(outline)
        for k in range(m):
            ia, ib = 1 + k, 1 + (k + 1) % m
            pa, pb, pc = uv[0], uv[ia], uv[ib]
            area = (pb[0] - pa[0]) * (pc[1] - pa[1]) - (pb[1] - pa[1]) * (pc[0] - pa[0])
            if abs(area) < 1e-9:
                continue
            w_b = ((xs - pa[0]) * (pc[1] - pa[1]) - (ys - pa[1]) * (pc[0] - pa[0])) / area
            w_c = ((pb[0] - pa[0]) * (ys - pa[1]) - (pb[1] - pa[1]) * (xs - pa[0])) / area
            w_a = 1.0 - w_b - w_c
            tri = (w_a >= -1e-4) & (w_b >= -1e-4) & (w_c >= -1e-4) & ~inside
            # 1/z is affine in screen space, so interpolating it gives perspective-correct depth.
            inv_depth[tri] = (w_a / verts[0, 2] + w_b / verts[ia, 2] + w_c / verts[ib, 2])[tri]
            inside |= tri
        if not inside.any():
            return
        ox = (xs[inside] - uv[0, 0]) / rim
        oy = (ys[inside] - uv[0, 1]) / rim
        nx, ny = normal[0] + bulge * ox, normal[1] + bulge * oy
        nz = normal[2] - 0.2 * bulge * (ox * ox + oy * oy)
        length = np.sqrt(nx * nx + ny * ny + nz * nz)
        nx, ny, nz = nx / length, ny / length, nz / length
        # ``thickness`` is measured along the face normal; along the viewing ray it grows as the
        # face tilts away (capped where the face is seen edge-on and the rim tubes take over).
        depth = 1.0 / inv_depth[inside] - thickness / max(abs(float(normal[2])), 0.33)
        shaded = self._shade(np.asarray(colour, dtype=np.float64), nx, ny, nz, gloss)
        self._commit(win, inside, depth.astype(np.float32), shaded.astype(np.float32), label)

    def flat_shape(self, mask: np.ndarray, depth: float, colours: np.ndarray, label: int) -> None:
        """Draw a flat, screen-parallel object covering boolean ``mask`` (canvas-sized) at ``depth``.

        ``colours`` is (K, 3) RGB 0..255, one row per True pixel of ``mask`` in row-major order, so
        occluders can carry a shading gradient or texture.
        """
        n = self.size * self.supersample
        depth_px = np.full(int(mask.sum()), depth, dtype=np.float32)
        self._commit((0, 0, n, n), mask, depth_px, np.asarray(colours, dtype=np.float32), label)

    def coverage(self) -> np.ndarray:
        """(H, W) bool, where anything has been drawn."""
        return np.isfinite(self.depth)


@dataclass(frozen=True)
class Hand3D:
    """One hand placed in the camera frame, ready to draw.

    Attributes:
        joints: (21, 3) camera-frame keypoints (metres), common order.
        radii: (21,) capsule radii at the keypoints (metres).
        outline: (M, 3) palm polygon, camera frame.
        outline_radii: (M,) half thickness of the palm rim at the outline points (metres).
        is_left: left or right hand (selects the label range).
        skin: (3,) RGB 0..255.
        arm: (P, 3) camera-frame polyline of the arm starting next to the wrist (empty: no arm).
        arm_radii: (P,) arm radius at each polyline point (metres).
        arm_colour: (3,) RGB of the arm (skin or a sleeve).
    """

    joints: np.ndarray
    radii: np.ndarray
    outline: np.ndarray
    outline_radii: np.ndarray
    is_left: bool
    skin: np.ndarray
    arm: np.ndarray
    arm_radii: np.ndarray
    arm_colour: np.ndarray


# The fingertip keypoint marks the end of the finger, so the round cap of the last segment is centred
# this many tip radii before it; the finger then overshoots the keypoint by only 0.4 of a radius.
TIP_INSET = 0.6


def _probe_points(hand: Hand3D) -> np.ndarray:
    """(21, 3) points that are drawn for each keypoint: the joints, with tips moved to the cap centre."""
    points = hand.joints.copy()
    for finger in FINGERS:
        dip, tip = FINGER_KEYPOINTS[finger][2:]
        direction = hand.joints[tip] - hand.joints[dip]
        length = float(np.linalg.norm(direction))
        inset = min(TIP_INSET * hand.radii[tip], 0.5 * length)
        points[tip] = hand.joints[tip] - inset * direction / max(length, 1e-9)
    return points


def palmar_direction(hand: Hand3D) -> np.ndarray:
    """(3,) unit vector out of the palm (camera frame), from the knuckles' handedness."""
    w = hand.joints[0]
    normal = np.cross(hand.joints[5] - w, hand.joints[17] - w)
    # index x pinky points out of the palm of a right hand; mirroring a left hand flips it.
    normal = normal if not hand.is_left else -normal
    return normal / np.linalg.norm(normal)


def draw_hand(canvas: Canvas, hand: Hand3D) -> None:
    """Draw the arm (label 1), palm and 15 finger segments of ``hand`` into ``canvas``."""
    _, palm_label = hand_labels(hand.is_left)
    for k in range(len(hand.arm) - 1):
        # The arm loses every tie with the palm, so the wrist area stays labelled as hand.
        canvas.capsule(
            hand.arm[k],
            hand.arm[k + 1],
            hand.arm_radii[k],
            hand.arm_radii[k + 1],
            hand.arm_colour,
            LABEL_PERSON,
            depth_bias=0.012,
            gloss=0.02,
        )
    palm_colour = hand.skin * 0.97
    # Fan apex on the metacarpals' plane: the thumb's outline points would otherwise pull the middle
    # of the palm towards the palmar side.
    apex = hand.joints[[0, 5, 9, 13, 17]].mean(axis=0)
    canvas.surface(hand.outline, palm_colour, palm_label, thickness=0.009, centre=apex)
    # A flat polygon vanishes edge-on and looks cut out of paper; tubes along the rim and the
    # metacarpals give the palm its thickness and rounded, shaded edges.
    m = len(hand.outline)
    for k in range(m):
        canvas.capsule(
            hand.outline[k],
            hand.outline[(k + 1) % m],
            hand.outline_radii[k],
            hand.outline_radii[(k + 1) % m],
            palm_colour,
            palm_label,
        )
    # Metacarpal tubes, set back towards the back of the hand: hidden under a palm seen from the
    # front, faint knuckle ridges on a back view, the body of the palm edge-on.
    dorsal = -palmar_direction(hand) * 0.002
    for finger in FINGERS[1:]:
        mcp = FINGER_KEYPOINTS[finger][0]
        canvas.capsule(
            hand.joints[0] + dorsal, hand.joints[mcp] + dorsal, 0.0075, 0.008, palm_colour, palm_label
        )
    points = _probe_points(hand)
    for fi, finger in enumerate(FINGERS):
        idx = FINGER_KEYPOINTS[finger]
        for seg in range(3):
            a, b = idx[seg], idx[seg + 1]
            # Finger tips are a touch pinker/lighter than the base, as in real hands.
            tint = hand.skin * (1.0 + 0.02 * seg) + np.array([4.0, 0.0, 0.0]) * seg
            canvas.capsule(
                points[a],
                points[b],
                hand.radii[a],
                hand.radii[b],
                np.clip(tint, 0, 255),
                finger_part_label(hand.is_left, fi, seg),
            )


def visibility(canvas: Canvas, hand: Hand3D, *, tolerance: float = 0.015) -> np.ndarray:
    """(21,) bool: which keypoints of ``hand`` are seen in the drawn canvas.

    A keypoint is visible when it projects inside the image, the nearest surface at its pixel
    belongs to the same hand, and that surface is no nearer than the keypoint's own flesh (its radius
    plus ``tolerance`` metres) - so parts of the same hand in front of it (a fist seen from the back)
    hide it as well as occluders and the other hand do. Fingertips are probed at the centre of the
    drawn tip cap, just inside the finger end.
    """
    probes = _probe_points(hand)
    uv = canvas.to_pixels(probes)
    n = canvas.size * canvas.supersample
    px = np.round(uv).astype(np.int64)
    inside = (px[:, 0] >= 0) & (px[:, 0] < n) & (px[:, 1] >= 0) & (px[:, 1] < n) & (probes[:, 2] > 0)
    vis = np.zeros(len(uv), dtype=bool)
    lo, hi = hand_labels(hand.is_left)
    for j in np.flatnonzero(inside):
        x, y = px[j]
        label = canvas.label[y, x]
        near_enough = canvas.depth[y, x] >= probes[j, 2] - hand.radii[j] - tolerance
        vis[j] = bool(lo <= label <= hi and near_enough)
    return vis


def downsample(canvas: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Box-filter the canvas to the output size.

    Returns:
        premultiplied: (size, size, 3) float32 colour times coverage, 0..255.
        alpha: (size, size) float32 coverage in 0..1.
    """
    s = canvas.supersample
    # Colour stays 0 wherever nothing was drawn, so it is already premultiplied by coverage.
    colour = canvas.colour
    cover = canvas.coverage().astype(np.float32)
    return _box(colour, s), _box(cover, s)


def _box(a: np.ndarray, s: int) -> np.ndarray:
    """Mean over s x s blocks of the first two axes (float32).

    Summing strided sub-grids, columns first then rows, is several times faster than a mean over a
    reshaped 4D/5D view.
    """
    cols = sum(a[:, j::s] for j in range(s))
    return (sum(cols[i::s] for i in range(s)) * np.float32(1.0 / (s * s))).astype(np.float32)


def sample_buffers(canvas: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Label (size, size) uint8 and depth (size, size) float32 at one sub-pixel per output pixel.

    Labels cannot be averaged, so the output takes the sub-sample nearest each pixel centre.
    """
    s = canvas.supersample
    o = s // 2
    return canvas.label[o::s, o::s].copy(), canvas.depth[o::s, o::s].copy()


def composite(premultiplied: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the foreground layer over a (H, W, 3) uint8 background."""
    out = premultiplied + (1.0 - alpha[..., None]) * background.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Backgrounds


def random_colour(rng: np.random.Generator, *, saturation: float | None = None) -> np.ndarray:
    """(3,) RGB 0..255 from a random hue, saturation and value."""
    h = rng.uniform()
    s = rng.uniform(0.1, 0.9) if saturation is None else saturation
    v = rng.uniform(0.15, 0.95)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb * 255.0


def value_noise(rng: np.random.Generator, size: int, *, octaves: int = 5, base_cells: int = 3) -> np.ndarray:
    """(size, size) float32 smooth fractal noise in 0..1 (bicubic-upsampled random grids)."""
    out = np.zeros((size, size), dtype=np.float32)
    amplitude, total = 1.0, 0.0
    cells = base_cells
    persistence = rng.uniform(0.35, 0.65)
    for _ in range(octaves):
        grid = rng.random((cells, cells), dtype=np.float32)
        layer = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
        out += amplitude * np.asarray(layer, dtype=np.float32)
        total += amplitude
        amplitude *= persistence
        cells *= 2
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _palette_map(rng: np.random.Generator, values: np.ndarray, n_colours: int) -> np.ndarray:
    """Map 0..1 values through a random piecewise-linear colour ramp; (H, W, 3) float32."""
    stops = np.sort(rng.uniform(0.0, 1.0, size=n_colours))
    stops[0], stops[-1] = 0.0, 1.0
    colours = np.stack([random_colour(rng) for _ in range(n_colours)])
    # A 256-entry lookup table replaces three full-image interpolations.
    lut = np.stack([np.interp(np.linspace(0.0, 1.0, 256), stops, colours[:, c]) for c in range(3)], axis=-1)
    return lut.astype(np.float32)[np.rint(values * 255.0).astype(np.intp)]


def _ramp(size: int, angle: float) -> np.ndarray:
    """(size, size) float32 coordinate along direction ``angle``, centred, in image widths."""
    u = np.arange(size, dtype=np.float32) / size - 0.5
    return u[None, :] * np.float32(np.cos(angle)) + u[:, None] * np.float32(np.sin(angle))


def _blend(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 mix of colours ``a`` and ``b`` by ``t`` (H, W) in 0..1."""
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    return a32 + t[..., None] * (b32 - a32)


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 linear two-colour gradient at a random angle."""
    t = np.clip(_ramp(size, rng.uniform(0.0, 2.0 * np.pi)) + 0.5, 0.0, 1.0)
    return _blend(t, random_colour(rng), random_colour(rng))


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 soft stripes or checkerboard (tiles, fabric, blinds)."""
    angle = rng.uniform(0.0, np.pi)
    period = rng.uniform(6.0, 40.0) / size
    wave = np.sin(np.float32(2.0 * np.pi / period) * _ramp(size, angle))
    if rng.uniform() < 0.4:
        wave = wave * np.sin(np.float32(2.0 * np.pi / period) * _ramp(size, angle + np.pi / 2.0))
    t = np.clip(0.5 + np.float32(rng.uniform(0.5, 3.0)) * wave, 0.0, 1.0)
    return _blend(t, random_colour(rng), random_colour(rng))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + np.float32(0.5), 0, 255).astype(np.uint8)


def _sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean float32 noise of standard deviation ``sigma``; uniform, as cheap as normal is not."""
    return (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(sigma * np.sqrt(12.0))


def _clutter(rng: np.random.Generator, base: np.ndarray, n_shapes: int) -> np.ndarray:
    """Draw random ellipses, boxes, polygons and lines (some skin-coloured) over ``base``."""
    size = base.shape[0]
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(n_shapes):
        if rng.uniform() < 0.15:
            colour = sample_skin(rng)  # distractors: skin-coloured blobs that are not hands
        else:
            colour = random_colour(rng)
        fill = tuple(int(c) for c in colour)
        cx, cy = rng.uniform(-0.1, 1.1, size=2) * size
        r = rng.uniform(0.03, 0.3) * size
        kind = rng.integers(0, 4)
        if kind == 0:
            rx, ry = r, r * rng.uniform(0.3, 1.0)
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill)
        elif kind == 1:
            draw.polygon(_rotated_box(rng, cx, cy, r, r * rng.uniform(0.2, 1.0)), fill=fill)
        elif kind == 2:
            draw.polygon(_random_polygon(rng, cx, cy, r), fill=fill)
        else:
            x2, y2 = rng.uniform(-0.1, 1.1, size=2) * size
            draw.line([cx, cy, x2, y2], fill=fill, width=int(rng.integers(1, max(2, size // 25))))
    if rng.uniform() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 2.5))))
    return np.asarray(img, dtype=np.float32)


def _rotated_box(rng: np.random.Generator, cx: float, cy: float, half_w: float, half_h: float) -> list:
    angle = rng.uniform(0.0, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in corners]


def _random_polygon(rng: np.random.Generator, cx: float, cy: float, r: float) -> list:
    n = int(rng.integers(3, 8))
    angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, size=n))
    radii = r * rng.uniform(0.4, 1.0, size=n)
    return [(cx + q * np.cos(a), cy + q * np.sin(a)) for a, q in zip(angles, radii, strict=True)]


def green_screen(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8 lit green-screen backdrop (FreiHAND's ``gs`` version).

    Real green-screen shots show a fold between wall and floor and uneven lighting; a random fold
    line with two shades of green and a broad light falloff imitate that.
    """
    green = np.array([rng.uniform(40, 110), rng.uniform(150, 215), rng.uniform(20, 80)], dtype=np.float32)
    side = _ramp(size, rng.uniform(0.0, 2.0 * np.pi)) > rng.uniform(-0.4, 0.4)
    shade = np.where(side, np.float32(rng.uniform(0.7, 0.95)), np.float32(1.0))
    lx, ly = rng.uniform(0.0, 1.0, size=2)
    u = np.arange(size, dtype=np.float32) / size
    falloff = 1.0 - np.float32(rng.uniform(0.1, 0.45)) * ((u[None, :] - lx) ** 2 + (u[:, None] - ly) ** 2)
    img = green[None, None, :] * (shade * falloff)[..., None]
    img += (value_noise(rng, size, octaves=3, base_cells=4)[..., None] - 0.5) * np.float32(20.0)
    img += _sensor_noise(rng, img.shape, 2.0)
    return _to_uint8(img)


def random_background(
    rng: np.random.Generator, size: int, *, kind: str | None = None, sensor_noise: bool = True
) -> np.ndarray:
    """(size, size, 3) uint8 background: noise texture, gradient, stripes or a cluttered scene.

    Args:
        kind: one of ``"texture"``, ``"gradient"``, ``"stripes"``, ``"clutter"``; random if None.
        sensor_noise: add faint per-pixel camera noise (photographs, i.e. FreiHAND). Off for
            rendered datasets like RHD, whose PNGs it would also make 3x larger and slower to write.
    """
    if kind is None:
        kind = str(rng.choice(["texture", "gradient", "stripes", "clutter"], p=[0.3, 0.15, 0.15, 0.4]))
    if kind == "texture":
        img = _palette_map(rng, value_noise(rng, size, base_cells=int(rng.integers(2, 6))), 3)
    elif kind == "gradient":
        img = _gradient(rng, size)
        img += (value_noise(rng, size, octaves=4)[..., None] - 0.5) * np.float32(rng.uniform(10, 60))
    elif kind == "stripes":
        img = _stripes(rng, size)
    elif kind == "clutter":
        base = _palette_map(rng, value_noise(rng, size), 2) if rng.uniform() < 0.5 else _gradient(rng, size)
        img = _clutter(rng, base, int(rng.integers(5, 30)))
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    if sensor_noise:
        img = img + _sensor_noise(rng, img.shape, rng.uniform(0.5, 4.0))
    return _to_uint8(img)


def colour_treatment(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: random brightness, contrast, saturation and hue shift of a whole image."""
    img = image.astype(np.float32)
    # Hue rotation about the grey axis of RGB space keeps brightness while shifting hue.
    theta = np.radians(rng.uniform(-25.0, 25.0))
    c, s = np.cos(theta), np.sin(theta)
    k = np.full((3, 3), 1.0 / 3.0)
    skew = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / np.sqrt(3.0)
    rot = c * np.eye(3) + s * skew + (1.0 - c) * k
    img = img @ rot.T.astype(np.float32)
    grey = img.mean(axis=-1, keepdims=True)
    img = grey + rng.uniform(0.6, 1.3) * (img - grey)
    mean = img.mean()
    img = mean + rng.uniform(0.7, 1.25) * (img - mean)
    img = img * rng.uniform(0.7, 1.25) + rng.uniform(-15.0, 15.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Occluders


def draw_occluder(
    canvas: Canvas, rng: np.random.Generator, centre_px: np.ndarray, size_px: float, depth: float
) -> None:
    """Draw one flat object (disc, bar, polygon or stick) centred near ``centre_px`` at ``depth``.

    Args:
        centre_px: (2,) output-resolution pixel the object should cover.
        size_px: rough object radius in output pixels.
        depth: camera z (metres) of the object; nearer than the hand to hide it.
    """
    s = canvas.supersample
    n = canvas.size * s
    cx, cy = (np.asarray(centre_px, dtype=np.float64) + 0.5) * s - 0.5
    r = size_px * s
    img = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(img)
    kind = rng.integers(0, 4)
    if kind == 0:
        rx, ry = r, r * rng.uniform(0.4, 1.0)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    elif kind == 1:
        draw.polygon(_rotated_box(rng, cx, cy, r, r * rng.uniform(0.3, 0.9)), fill=255)
    elif kind == 2:
        draw.polygon(_random_polygon(rng, cx, cy, r), fill=255)
    else:
        # A long thin object (pen, spoon handle, cable) crossing the hand.
        angle = rng.uniform(0.0, np.pi)
        dx, dy = np.cos(angle) * 2.5 * r, np.sin(angle) * 2.5 * r
        draw.line(
            [cx - dx, cy - dy, cx + dx, cy + dy], fill=255, width=max(2, int(r * rng.uniform(0.2, 0.5)))
        )
    mask = np.asarray(img) > 127
    if not mask.any():
        return
    base = random_colour(rng)
    ys, xs = np.nonzero(mask)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    # A linear shading ramp makes the object read as a lit solid rather than a cut-out.
    ramp = ((xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)) / max(r, 1.0)
    shade = np.clip(0.85 + 0.25 * ramp, 0.5, 1.2)
    canvas.flat_shape(mask, depth, np.clip(base[None, :] * shade[:, None], 0, 255), LABEL_BACKGROUND)
