"""Compiled per-pixel loops (numba) for the renderer's per-pixel work that vectorised torch does poorly:
the primary rays (the first surface of every pixel), the shadow rays (is a light blocked before the
point it lights), solid-texture albedo, and the 3 x 3 stencils of the dense labels; also the few rays
per view that place the cameras (the first surface along a ray; the shadow-ray loop for visibility):
with the torch casts, placing the cameras of 64 scenes took 29 ms, with these 9 ms.

Per pixel, the torch casts in :mod:`taskonomy.bank.render.raycast` run a dozen full-image passes (gather the
candidates, move them into each primitive's frame, intersect every candidate, reduce, scatter back);
here each ray visits its candidate primitives once in registers, and a shadow ray stops at its first
blocker. The geometry follows raycast.py (the unit shapes, the tie rules, the local normals and
curvatures) but is evaluated in float64 from the float32 inputs: hit points lie on their surfaces, so
a sphere's two curvatures are both 1 / radius (float32 put them up to 0.5% apart). The torch casts are
the tests' reference: the same surface at every pixel but exact grazing ties. The albedo and the stencils
keep float32 and the torch forms' order of operations (the stencils give the same bytes).

Loops are single-threaded: the render stage's worker processes use the cores. Compiled code is cached
in ``__pycache__`` beside this file (about 11 s to compile once, about 1 s to load per process).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from taskonomy.bank.render.scene import BOX, CYLINDER, ELLIPSOID      # CONE is the remaining case

# shared with the torch casts of raycast.py, which import them from here
EPS = 1e-4                  # smallest accepted t (m): a ray does not hit the surface it starts on
ROOM_FACES = 6              # surface ids 0..5 are the room faces (2 * axis + (ray goes + along axis))
MAX_CURVATURE = 100.0       # 1/m; caps the cone apex
INF = np.inf

jit = numba.njit(cache=True, nogil=True, error_model="numpy")
inlined = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")   # into its callers


@inlined
def unit_hit(kind, ox, oy, oz, dx, dy, dz):
    """(t, part) of the first hit of a ray in the unit frame with unit shape ``kind`` (t = inf if none):
    raycast._hit_* for one ray. part: the box's axis; 0 = side, 1 = cap for cylinders and cones."""
    if kind == ELLIPSOID:
        a = dx * dx + dy * dy + dz * dz
        b = ox * dx + oy * dy + oz * dz
        disc = b * b - a * (ox * ox + oy * oy + oz * oz - 1.0)
        t = (-b - math.sqrt(max(disc, 0.0))) / a
        return (t if disc >= 0 and t > EPS else INF), 0
    if kind == BOX:
        near, far, axis = -INF, INF, 0
        for i in range(3):
            o, d = (ox, oy, oz)[i], (dx, dy, dz)[i]
            inv = 1.0 / d
            t1, t2 = (-1.0 - o) * inv, (1.0 - o) * inv
            lo, hi = min(t1, t2), max(t1, t2)
            if lo > near or i == 0:          # the first axis of the largest entry, as torch's max
                near, axis = lo, i
            far = min(far, hi)
        return (near if near <= far and near > EPS else INF), axis
    side = INF
    if kind == CYLINDER:
        a = dx * dx + dz * dz
        b = ox * dx + oz * dz
        disc = b * b - a * (ox * ox + oz * oz - 1.0)
        t = (-b - math.sqrt(max(disc, 0.0))) / a
        if disc >= 0 and abs(oy + t * dy) <= 1.0 and t > EPS:
            side = t
        cap_y = -1.0 if dy > 0 else 1.0
    else:                                    # cone: x^2 + z^2 = u^2, u = (1 - y) / 2
        u0, du = (1.0 - oy) / 2, -dy / 2
        a = dx * dx + dz * dz - du * du
        b = ox * dx + oz * dz - u0 * du
        c = ox * ox + oz * oz - u0 * u0
        disc = b * b - a * c
        q = -(b + math.copysign(math.sqrt(max(disc, 0.0)), b))
        for t in (q / a, c / q):
            u = u0 + t * du
            if disc >= 0 and u >= 0 and u <= 1 and t > EPS and t < side:
                side = t
        cap_y = -1.0
    t = (cap_y - oy) / dy
    x, z = ox + t * dx, oz + t * dz
    cap = t if x * x + z * z <= 1.0 and t > EPS else INF
    return (side, 0) if side <= cap else (cap, 1)


@inlined
def _room_exit(room_lo, room_hi, s, ox, oy, oz, dx, dy, dz):
    """(t, face) where a ray from inside the room box of scene ``s`` leaves it: the wall ahead on each
    axis, face ``2 * axis + (ray goes + along the axis)``; on ties the lower axis wins."""
    best, face = INF, 0
    for axis in range(3):
        d, o = (dx, dy, dz)[axis], (ox, oy, oz)[axis]
        ahead = d > 0
        gap = room_hi[s, axis] - o if ahead else o - room_lo[s, axis]
        t_axis = gap / abs(d)
        if axis == 0 or t_axis < best:
            best, face = t_axis, 2 * axis + ahead
    return best, face


@inlined
def _unit_origin(rot, scale, f, rx, ry, rz):
    """A ray origin in the unit frame of primitive ``f``, ``R^T (o - c) / s``, from ``r = o - c``."""
    return ((rot[f, 0, 0] * rx + rot[f, 1, 0] * ry + rot[f, 2, 0] * rz) / scale[f, 0],
            (rot[f, 0, 1] * rx + rot[f, 1, 1] * ry + rot[f, 2, 1] * rz) / scale[f, 1],
            (rot[f, 0, 2] * rx + rot[f, 1, 2] * ry + rot[f, 2, 2] * rz) / scale[f, 2])


@inlined
def _unit_dir(to_unit, f, dx, dy, dz):
    """A ray direction in the unit frame of primitive ``f``: ``diag(1 / s) R^T d`` from its ``to_unit`` column."""
    return (to_unit[0, f] * dx + to_unit[1, f] * dy + to_unit[2, f] * dz,
            to_unit[3, f] * dx + to_unit[4, f] * dy + to_unit[5, f] * dz,
            to_unit[6, f] * dx + to_unit[7, f] * dy + to_unit[8, f] * dz)


@jit
def _surface(kind, part, qx, qy, qz, sx, sy, sz):
    """Local normal (unnormalised, unscaled frame) and principal curvatures at unit-frame point q of a
    primitive of half extents s: raycast._surface for one point."""
    k1 = 0.0
    k2 = 0.0
    side = part == 0
    if kind == ELLIPSOID:
        nx, ny, nz = qx / sx, qy / sy, qz / sz
        x, y, z = qx * sx, qy * sy, qz * sz
        abc2 = (sx * sy * sz) ** 2
        gx, gy, gz = x / (sx * sx), y / (sy * sy), z / (sz * sz)
        h = math.sqrt(gx * gx + gy * gy + gz * gz)
        gauss = 1.0 / (abc2 * h ** 4)
        mean = (sx * sx + sy * sy + sz * sz - (x * x + y * y + z * z)) / (2 * abc2 * h ** 3)
        spread = math.sqrt(max(mean * mean - gauss, 0.0))
        k1, k2 = mean + spread, mean - spread
    elif kind == BOX:
        axis = min(max(part, 0), 2)
        nx = np.sign(qx) if axis == 0 else 0.0
        ny = np.sign(qy) if axis == 1 else 0.0
        nz = np.sign(qz) if axis == 2 else 0.0
    elif kind == CYLINDER:
        if side:
            nx, ny, nz = qx / sx, 0.0, qz / sz
            k1 = 1.0 / sx
        else:
            nx, ny, nz = 0.0, np.sign(qy), 0.0
    else:
        if side:
            nx, ny, nz = 2 * qx / sx, (1.0 - qy) / 2 / sy, 2 * qz / sz
            rho = sx * math.sqrt(qx * qx + qz * qz)
            cos_half = 2 * sy / math.sqrt(4 * sy * sy + sx * sx)
            k1 = cos_half / max(rho, 1.0 / MAX_CURVATURE)
        else:
            nx, ny, nz = 0.0, -abs(np.sign(qy)), 0.0
    k1 = min(max(k1, -MAX_CURVATURE), MAX_CURVATURE)
    k2 = min(max(k2, -MAX_CURVATURE), MAX_CURVATURE)
    return nx, ny, nz, k1, k2


@jit
def primary_hits(kind, centre, rot, scale, to_unit, room_lo, room_hi, per_scene, scene, origin, dirs,
                 box, t, normal, surface, curvature, texture):
    """First surface of every pixel ray ``dirs`` (3, V, N; unit, planar) of views from ``origin`` (V, 3)
    in scenes ``scene`` (V,): raycast.nearest_hit with image-space candidates, written into ``t`` (V, N),
    ``normal`` (3, V, N), ``surface`` (V, N), ``curvature`` (2, V, N) and ``texture`` (3, V, N).

    ``box`` (V, P, 4): the inclusive pixel range (x0, x1, y0, y1) that may see each primitive
    (raycast.pixel_boxes; empty where x1 < x0); the image is R x R, row-major, N = R * R. Primitives are
    tried in index order and an equal t goes to the later one, as in nearest_hit."""
    V, N = t.shape
    R = int(round(math.sqrt(N)))
    P = per_scene
    best_t = np.empty(N)            # float64 until written: the surface is evaluated at the unrounded hit
    best_p = np.empty(N, np.int64)
    best_part = np.empty(N, np.int64)
    best_q = np.empty((3, N))       # the hit point in the winning primitive's unit frame
    for v in range(V):
        s = scene[v]
        ox, oy, oz = np.float64(origin[v, 0]), np.float64(origin[v, 1]), np.float64(origin[v, 2])   # float64 from here
        # the room: exit distance and face
        for n in range(N):
            dx, dy, dz = np.float64(dirs[0, v, n]), np.float64(dirs[1, v, n]), np.float64(dirs[2, v, n])
            best_t[n], surface[v, n] = _room_exit(room_lo, room_hi, s, ox, oy, oz, dx, dy, dz)
            best_p[n] = -1
        # the primitives, each over the pixels of its box
        for p in range(P):
            f = s * P + p
            k = kind[f]
            x0, x1, y0, y1 = box[v, p, 0], box[v, p, 1], box[v, p, 2], box[v, p, 3]
            if k < 0 or x1 < x0 or y1 < y0:
                continue
            lx, ly, lz = _unit_origin(rot, scale, f, ox - centre[f, 0], oy - centre[f, 1], oz - centre[f, 2])
            for py in range(y0, y1 + 1):
                for px in range(x0, x1 + 1):
                    n = py * R + px
                    dx, dy, dz = np.float64(dirs[0, v, n]), np.float64(dirs[1, v, n]), np.float64(dirs[2, v, n])
                    ux, uy, uz = _unit_dir(to_unit, f, dx, dy, dz)
                    tk, part = unit_hit(k, lx, ly, lz, ux, uy, uz)
                    if tk < best_t[n] or (tk == best_t[n] and best_p[n] >= 0):
                        best_t[n] = tk
                        best_p[n] = p
                        best_part[n] = part
                        best_q[0, n], best_q[1, n], best_q[2, n] = lx + tk * ux, ly + tk * uy, lz + tk * uz
        # the surface at each pixel's hit
        for n in range(N):
            dx, dy, dz = np.float64(dirs[0, v, n]), np.float64(dirs[1, v, n]), np.float64(dirs[2, v, n])
            tn = best_t[n]
            t[v, n] = tn
            p = best_p[n]
            if p < 0:
                face = surface[v, n]
                axis = face // 2
                for i in range(3):
                    normal[i, v, n] = 0.0
                normal[axis, v, n] = 1.0 if face % 2 == 0 else -1.0
                texture[0, v, n] = ox + tn * dx
                texture[1, v, n] = oy + tn * dy
                texture[2, v, n] = oz + tn * dz
                curvature[0, v, n] = 0.0
                curvature[1, v, n] = 0.0
                continue
            f = s * P + p
            qx, qy, qz = best_q[0, n], best_q[1, n], best_q[2, n]
            sx, sy, sz = np.float64(scale[f, 0]), np.float64(scale[f, 1]), np.float64(scale[f, 2])
            lx, ly, lz, k1, k2 = _surface(kind[f], best_part[n], qx, qy, qz, sx, sy, sz)
            # local -> world (rot's columns are the local axes), unit, facing the ray origin
            wx = rot[f, 0, 0] * lx + rot[f, 0, 1] * ly + rot[f, 0, 2] * lz
            wy = rot[f, 1, 0] * lx + rot[f, 1, 1] * ly + rot[f, 1, 2] * lz
            wz = rot[f, 2, 0] * lx + rot[f, 2, 1] * ly + rot[f, 2, 2] * lz
            scale_n = (-1.0 if wx * dx + wy * dy + wz * dz > 0 else 1.0) / math.sqrt(wx * wx + wy * wy + wz * wz)
            normal[0, v, n], normal[1, v, n], normal[2, v, n] = wx * scale_n, wy * scale_n, wz * scale_n
            curvature[0, v, n], curvature[1, v, n] = k1, k2
            texture[0, v, n], texture[1, v, n], texture[2, v, n] = qx * sx, qy * sy, qz * sz
            surface[v, n] = ROOM_FACES + p


# --------------------------------------------------------------------------------------------------
# Single rays: the distance to the first surface (placing the cameras)
# --------------------------------------------------------------------------------------------------

@jit
def first_hit_t(kind, centre, rot, scale, to_unit, radius, room_lo, room_hi, per_scene, scene, origin, dirs, t):
    """Distance to the first surface along each ray ``dirs`` (3, G, N; unit, planar) from ``origin`` (G, 3)
    inside the rooms of scenes ``scene`` (G,), into ``t`` (G, N): raycast.nearest_hit's ``t``. A primitive
    is intersected only where the ray's line meets its bounding sphere in front of the origin and before
    the nearest hit so far."""
    G, N = t.shape
    P = per_scene
    for g in range(G):
        s = scene[g]
        ox, oy, oz = np.float64(origin[g, 0]), np.float64(origin[g, 1]), np.float64(origin[g, 2])
        for n in range(N):
            dx, dy, dz = np.float64(dirs[0, g, n]), np.float64(dirs[1, g, n]), np.float64(dirs[2, g, n])
            best = _room_exit(room_lo, room_hi, s, ox, oy, oz, dx, dy, dz)[0]
            for p in range(P):
                f = s * P + p
                if kind[f] < 0:
                    continue
                rx, ry, rz = ox - centre[f, 0], oy - centre[f, 1], oz - centre[f, 2]
                r = radius[f] * (1.0 + 1e-4) + 1e-6  # a margin keeps the test conservative
                b = -(rx * dx + ry * dy + rz * dz)   # along the ray to the centre's plane
                dist2 = rx * rx + ry * ry + rz * rz
                if dist2 > r * r and (dist2 - b * b > r * r or b < 0 or b - r > best):
                    continue                         # passes by, behind, or beyond the nearest hit
                lx, ly, lz = _unit_origin(rot, scale, f, rx, ry, rz)
                ux, uy, uz = _unit_dir(to_unit, f, dx, dy, dz)
                best = min(best, unit_hit(kind[f], lx, ly, lz, ux, uy, uz)[0])
            t[g, n] = best


# --------------------------------------------------------------------------------------------------
# Shadow rays: many rays from one origin (a light)
# --------------------------------------------------------------------------------------------------

@jit
def shadowed(kind, centre, rot, scale, to_unit, radius, per_scene, scene, origin, dirs, t_max, active,
             tile, blocked):
    """Whether a primitive lies on each active ray ``dirs`` (3, G, N; unit, planar) from ``origin`` (G, 3)
    before ``t_max`` (G, N), into ``blocked`` (G, N; inactive rays untouched): raycast.occluded.

    The rays of a group come in runs of ``tile`` (pixels of an image row: close in direction). A run
    first keeps the primitives whose bounding cone from the origin meets the cone around the run's mean
    direction that holds all its active rays, and whose sphere starts before the run's farthest
    ``t_max``; then each ray skips those its line passes by, or that lie behind its origin or beyond its
    ``t_max``, and stops at its first blocker."""
    G, N = t_max.shape
    P = per_scene
    o_l = np.empty((P, 3))
    axis = np.empty((P, 3))
    dist = np.empty(P)
    half = np.empty(P)
    padded = np.empty(P)                # bounding radii with the margin
    keep = np.empty(P, np.int64)
    for g in range(G):
        s = scene[g]
        ox, oy, oz = np.float64(origin[g, 0]), np.float64(origin[g, 1]), np.float64(origin[g, 2])
        for p in range(P):
            f = s * P + p
            rx, ry, rz = ox - centre[f, 0], oy - centre[f, 1], oz - centre[f, 2]
            dist[p] = math.sqrt(rx * rx + ry * ry + rz * rz)
            axis[p, 0], axis[p, 1], axis[p, 2] = -rx / dist[p], -ry / dist[p], -rz / dist[p]
            padded[p] = r = radius[f] * (1.0 + 1e-4) + 1e-6      # a margin keeps the tests conservative
            half[p] = math.asin(r / dist[p]) if r < dist[p] else 4.0     # 4 > pi: the origin is inside
            o_l[p, 0], o_l[p, 1], o_l[p, 2] = _unit_origin(rot, scale, f, rx, ry, rz)
        for start in range(0, N, tile):
            stop = min(N, start + tile)
            mx, my, mz, reach = 0.0, 0.0, 0.0, -INF
            for n in range(start, stop):
                if active[g, n]:
                    mx, my, mz = mx + dirs[0, g, n], my + dirs[1, g, n], mz + dirs[2, g, n]
                    reach = max(reach, t_max[g, n])
            if reach == -INF:
                continue
            length = math.sqrt(mx * mx + my * my + mz * mz)
            spread = math.pi
            if length > 1e-6:
                mx, my, mz = mx / length, my / length, mz / length
                low = 1.0
                for n in range(start, stop):
                    if active[g, n]:
                        low = min(low, mx * dirs[0, g, n] + my * dirs[1, g, n] + mz * dirs[2, g, n])
                spread = math.acos(max(-1.0, low))
            kept = 0
            for p in range(P):
                if kind[s * P + p] < 0 or dist[p] - radius[s * P + p] > reach:
                    continue
                cos_apart = mx * axis[p, 0] + my * axis[p, 1] + mz * axis[p, 2]
                if math.acos(min(1.0, max(-1.0, cos_apart))) <= spread + half[p] + 1e-3:
                    keep[kept] = p
                    kept += 1
            for n in range(start, stop):
                if not active[g, n]:
                    continue
                dx, dy, dz = np.float64(dirs[0, g, n]), np.float64(dirs[1, g, n]), np.float64(dirs[2, g, n])
                for j in range(kept):
                    p = keep[j]
                    f = s * P + p
                    r = padded[p]
                    b = dist[p] * (axis[p, 0] * dx + axis[p, 1] * dy + axis[p, 2] * dz)   # to the centre's plane
                    if dist[p] > r and (dist[p] * dist[p] - b * b > r * r or b < 0):
                        continue                              # passes by, or the sphere is behind
                    if b - r > t_max[g, n]:
                        continue                              # the sphere starts beyond t_max
                    ux, uy, uz = _unit_dir(to_unit, f, dx, dy, dz)
                    if unit_hit(kind[f], o_l[p, 0], o_l[p, 1], o_l[p, 2], ux, uy, uz)[0] < t_max[g, n]:
                        blocked[g, n] = True
                        break


# --------------------------------------------------------------------------------------------------
# Materials
# --------------------------------------------------------------------------------------------------

@jit
def albedo(pattern, table, material, point, out):
    """Albedo (3, k) into ``out`` of flat materials ``material`` (k,) at texture-frame points ``point``
    (3, k): shading.albedo's solid textures. ``table`` (18, M): waves (9, row-major), phase (3),
    colour_a (3), colour_b (3) of each material."""
    for j in range(len(material)):
        m = material[j]
        kind = pattern[m]
        mix = 0.0
        if kind != 0:                                                 # not SOLID
            x, y, z = point[0, j], point[1, j], point[2, j]
            w0 = table[9, m] + table[0, m] * x + table[1, m] * y + table[2, m] * z
            if kind == 2:                                             # STRIPES
                mix = math.floor(w0) % 2.0
            else:
                w1 = table[10, m] + table[3, m] * x + table[4, m] * y + table[5, m] * z
                w2 = table[11, m] + table[6, m] * x + table[7, m] * y + table[8, m] * z
                if kind == 1:                                         # CHECKER
                    mix = abs((math.floor(w0) + math.floor(w1) + math.floor(w2)) % 2.0)
                else:                                                 # NOISE
                    mix = min(max((math.sin(w0) + math.sin(w1) + math.sin(w2)) * 0.35 + 0.5, 0.0), 1.0)
        for c in range(3):
            a = table[12 + c, m]
            out[c, j] = a + mix * (table[15 + c, m] - a)


# --------------------------------------------------------------------------------------------------
# Image filters (labels.py): replicate-padded 3 x 3 stencils, float32 in the order of the torch forms
# --------------------------------------------------------------------------------------------------

@jit
def blur_sum(x, out):
    """16 x the separable [1, 2, 1] / 4 smoothing of ``x`` (V, C, H, W) float32 into ``out``: rows first,
    then columns, each ``(a + 2 b) + c``."""
    V, C, H, W = x.shape
    two = np.float32(2.0)
    rows = np.empty(W, np.float32)
    for v in range(V):
        for c in range(C):
            for i in range(H):
                up, down = max(i - 1, 0), min(i + 1, H - 1)
                for j in range(W):
                    rows[j] = x[v, c, up, j] + two * x[v, c, i, j] + x[v, c, down, j]
                for j in range(W):
                    out[v, c, i, j] = rows[max(j - 1, 0)] + two * rows[j] + rows[min(j + 1, W - 1)]


@inlined
def _sobel_at(x, v, c, i, j, up, down, left, right):
    """8 x the horizontal and vertical Sobel derivatives of channel ``c`` of view ``v`` at pixel (i, j), given
    its replicate-padded neighbours' rows and columns."""
    two = np.float32(2.0)
    gx = ((x[v, c, up, right] + two * x[v, c, i, right] + x[v, c, down, right])
          - (x[v, c, up, left] + two * x[v, c, i, left] + x[v, c, down, left]))
    gy = ((x[v, c, down, left] + two * x[v, c, down, j] + x[v, c, down, right])
          - (x[v, c, up, left] + two * x[v, c, up, j] + x[v, c, up, right]))
    return gx, gy


@jit
def sobel_8(x, gx, gy):
    """8 x the horizontal and vertical Sobel derivatives of ``x`` (V, C, H, W) float32 into ``gx``, ``gy``."""
    V, C, H, W = x.shape
    for v in range(V):
        for c in range(C):
            for i in range(H):
                up, down = max(i - 1, 0), min(i + 1, H - 1)
                for j in range(W):
                    left, right = max(j - 1, 0), min(j + 1, W - 1)
                    gx[v, c, i, j], gy[v, c, i, j] = _sobel_at(x, v, c, i, j, up, down, left, right)


@jit
def structure_8(gx, gy, out):
    """The structure tensor entries (V, 3, H, W) = (gx gx, gy gy, gx gy), summed over the channels in
    channel order, from 8 x the Sobel derivatives (V, C, H, W), into ``out``."""
    V, C, H, W = gx.shape
    for v in range(V):
        for i in range(H):
            for j in range(W):
                a, b = gx[v, 0, i, j], gy[v, 0, i, j]
                xx, yy, xy = a * a, b * b, a * b
                for c in range(1, C):
                    xx += gx[v, c, i, j] * gx[v, c, i, j]
                    yy += gy[v, c, i, j] * gy[v, c, i, j]
                    xy += gx[v, c, i, j] * gy[v, c, i, j]
                out[v, 0, i, j], out[v, 1, i, j], out[v, 2, i, j] = xx, yy, xy


@jit
def occlusion_edges(point, normal, surface, is_room, gap, focal, edge):
    """labels.edge3d's edge pixels: ``edge`` (V, H, W) True on both pixels of each right / lower neighbour
    pair on different surfaces (not two room faces) where one lies off the other's tangent plane by more
    than ``gap`` pixel footprints (camera-frame ``point`` and ``normal``, (V, 3, H, W) float32). float32 in
    the torch form's order of operations: the same pixels."""
    V, _, H, W = point.shape
    limit = np.float32(gap)
    f = np.float32(focal)
    for v in range(V):
        for i in range(H):
            for j in range(W):
                for di, dj in ((0, 1), (1, 0)):
                    k, m = i + di, j + dj
                    if k >= H or m >= W or surface[v, k, m] == surface[v, i, j]:
                        continue
                    if is_room[v, k, m] and is_room[v, i, j]:
                        continue
                    a0 = point[v, 0, k, m] - point[v, 0, i, j]
                    a1 = point[v, 1, k, m] - point[v, 1, i, j]
                    a2 = point[v, 2, k, m] - point[v, 2, i, j]
                    off_a = abs(normal[v, 0, k, m] * a0 + normal[v, 1, k, m] * a1 + normal[v, 2, k, m] * a2)
                    off_b = abs(normal[v, 0, i, j] * a0 + normal[v, 1, i, j] * a1 + normal[v, 2, i, j] * a2)
                    if max(off_a, off_b) > limit * (min(point[v, 2, k, m], point[v, 2, i, j]) / f):
                        edge[v, k, m] = True
                        edge[v, i, j] = True


@jit
def normal_keys(surface, normal, out):
    """labels.segment25d's region key of each pixel, into ``out`` (V, H, W): ``surface * 6 + 2 * axis +
    positive`` with ``axis`` the normal's dominant axis (the first of ties) and ``positive`` its sign."""
    V, H, W = surface.shape
    for v in range(V):
        for i in range(H):
            for j in range(W):
                x, y, z = normal[v, 0, i, j], normal[v, 1, i, j], normal[v, 2, i, j]
                if abs(x) >= abs(y) and abs(x) >= abs(z):
                    axis, along = 0, x
                elif abs(y) >= abs(z):
                    axis, along = 1, y
                else:
                    axis, along = 2, z
                out[v, i, j] = surface[v, i, j] * 6 + 2 * axis + (1 if along > 0 else 0)


@jit
def sobel_structure_8(x, out):
    """structure_8 of sobel_8 of ``x`` (V, C, H, W) float32 in one pass, into ``out`` (V, 3, H, W): the
    same floats without the derivative images."""
    V, C, H, W = x.shape
    for v in range(V):
        for i in range(H):
            up, down = max(i - 1, 0), min(i + 1, H - 1)
            for j in range(W):
                left, right = max(j - 1, 0), min(j + 1, W - 1)
                xx = yy = xy = np.float32(0.0)
                for c in range(C):
                    a, b = _sobel_at(x, v, c, i, j, up, down, left, right)
                    if c == 0:
                        xx, yy, xy = a * a, b * b, a * b
                    else:
                        xx += a * a
                        yy += b * b
                        xy += a * b
                out[v, 0, i, j], out[v, 1, i, j], out[v, 2, i, j] = xx, yy, xy


@jit
def harris_response(m, k, scale, out):
    """``max(xx yy - xy^2 - k (xx + yy)^2, 0) * scale`` of the blurred structure tensor ``m`` (V, 3, H, W)
    float32, into ``out`` (V, 1, H, W): float32, in the torch form's order of operations."""
    V, _, H, W = m.shape
    k32, scale32 = np.float32(k), np.float32(scale)
    for v in range(V):
        for i in range(H):
            for j in range(W):
                xx, yy, xy = m[v, 0, i, j], m[v, 1, i, j], m[v, 2, i, j]
                trace = xx + yy
                r = (xx * yy - xy * xy) - k32 * (trace * trace)
                out[v, 0, i, j] = max(r, np.float32(0.0)) * scale32
