"""Ray casting against the room box and the analytic primitives of a batch of scenes.

Rays come in groups that share an origin: the pixels of one view (origin = camera centre), the shadow
rays of one view towards one light (origin = the light), or a single visibility ray. A group belongs to
one scene. Each primitive is a unit shape (unit sphere, cube [-1, 1]^3, cylinder of radius 1 and height
2, cone of base radius 1 at y = -1 with its apex at y = 1) scaled per axis, rotated and translated; a ray
mapped into the unit frame keeps its parameter t, so every intersection is computed there.

Two forms of the same casts:

- compiled loops (taskonomy.bank.render.kernels), what the renderer runs: the pixels of whole views
  (:func:`view_hits`, :func:`shadowed`) and the few rays that place the cameras (:func:`first_hit_t`, and
  :func:`shadowed` with runs of one ray). Primary rays try only the primitives whose image-space box
  (:func:`pixel_boxes`, the projection of the bounding sphere) holds their pixel; shadow rays are culled
  for a run of neighbouring pixels at a time (the cone holding the run's rays against each sphere's
  cone), then ray by ray, and stop at their first blocker. The geometry is evaluated in float64.
- vectorised torch in float32 (:func:`nearest_hit`, :func:`occluded`), the tests' reference for the
  compiled loops: a primitive can only be hit by the rays of a group that fall inside the cone from the
  group's origin around its bounding sphere (one batched matrix product), and only those (ray,
  primitive) candidates are intersected exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from taskonomy.bank.render import kernels
from taskonomy.bank.render.kernels import EPS, MAX_CURVATURE, ROOM_FACES
from taskonomy.bank.render.scene import BOX, CONE, CYLINDER, ELLIPSOID, Scene
from taskonomy.bank.render.vector import planar_dot, planar_matvec, rotate_back, sqrt_

CULL_BLOCK = 1 << 21        # (group, ray, primitive) triples culled per block
INF = float("inf")
SHADOW_RUN = 32             # shadow rays culled together (neighbouring pixels of a row)
# inward normal of room face 2 * axis + (ray goes + along the axis), planar (3, 6)
_FACE_NORMAL = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]).t().contiguous()


@dataclass(frozen=True)
class Primitives:
    """The primitives of S scenes padded to P each, flat index ``s * P + p``; room boxes per scene."""
    kind: Tensor            # (S * P,) int64; -1 marks padding
    centre: Tensor          # (S * P, 3)
    rot: Tensor             # (S * P, 3, 3) local -> world
    scale: Tensor           # (S * P, 3)
    radius: Tensor          # (S * P,) bounding sphere radius
    to_unit: Tensor         # (9, S * P) world -> unit frame diag(1 / s) R^T, row-major, one column each
    to_world: Tensor        # (9, S * P) the rotations local -> world, row-major, one column each
    room_lo: Tensor         # (S, 3)
    room_hi: Tensor         # (S, 3)
    per_scene: int          # P


def pack(scenes: list[Scene]) -> Primitives:
    """Stack the primitives of ``scenes`` into padded float32 tensors."""
    per_scene = max(1, max(len(s.prim_kind) for s in scenes))
    n = len(scenes) * per_scene
    kind = np.full(n, -1, dtype=np.int64)
    centre = np.zeros((n, 3), np.float32)
    rot = np.tile(np.eye(3, dtype=np.float32), (n, 1, 1))
    scale = np.ones((n, 3), np.float32)
    for i, s in enumerate(scenes):
        at = slice(i * per_scene, i * per_scene + len(s.prim_kind))
        kind[at], centre[at], rot[at], scale[at] = s.prim_kind, s.prim_centre, s.prim_rot, s.prim_scale
    rooms = np.array([s.room for s in scenes], np.float32)
    lo = np.stack([-rooms[:, 0] / 2, np.zeros(len(scenes), np.float32), -rooms[:, 2] / 2], axis=1)
    hi = np.stack([rooms[:, 0] / 2, rooms[:, 1], rooms[:, 2] / 2], axis=1)
    scale_t = torch.from_numpy(scale)
    to_unit = torch.from_numpy(rot.transpose(0, 2, 1) / scale[:, :, None]).reshape(n, 9).t().contiguous()
    return Primitives(kind=torch.from_numpy(kind), centre=torch.from_numpy(centre), rot=torch.from_numpy(rot),
                      scale=scale_t, radius=scale_t.norm(dim=1), to_unit=to_unit,
                      to_world=torch.from_numpy(rot).reshape(n, 9).t().contiguous(), room_lo=torch.from_numpy(lo),
                      room_hi=torch.from_numpy(hi), per_scene=per_scene)


@dataclass(frozen=True)
class Hits:
    """The first surface along each ray of G groups of N rays; vectors planar."""
    t: Tensor               # (G, N) distance along the unit ray
    normal: Tensor          # (3, G, N) unit world normal, facing the ray origin
    surface: Tensor         # (G, N) int64: room face 0..5, or ROOM_FACES + primitive index in the scene
    curvature: Tensor       # (2, G, N) principal curvatures k1 >= k2 (1/m), convex > 0
    texture_point: Tensor   # (3, G, N) the point in its texture frame: world (room), primitive (objects)


# Unit shapes: t of the first hit (inf if none) and the part hit, for rays in the unit frame given planar,
# origins and directions (3, k)
# --------------------------------------------------------------------------------------------------

def _first(*ts: Tensor) -> tuple[Tensor, Tensor]:
    t, part = torch.stack(ts).min(dim=0)
    return t, part


def _hit_ellipsoid(o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    a = planar_dot(d, d)
    b = planar_dot(o, d)
    disc = b * b - a * (planar_dot(o, o) - 1.0)
    t = (-b - disc.clamp_min(0).sqrt()) / a
    return torch.where((disc >= 0) & (t > EPS), t, INF), torch.zeros_like(b, dtype=torch.int64)


def _hit_box(o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    inv = 1.0 / d
    t1, t2 = (-1.0 - o) * inv, (1.0 - o) * inv
    near, axis = torch.minimum(t1, t2).max(dim=0)
    far = torch.maximum(t1, t2).min(dim=0).values
    return torch.where((near <= far) & (near > EPS), near, INF), axis


def _cap(o: Tensor, d: Tensor, y: Tensor | float) -> Tensor:
    """t where the ray crosses the plane at height ``y`` inside the unit disc (inf otherwise)."""
    t = (y - o[1]) / d[1]
    x, z = o[0] + t * d[0], o[2] + t * d[2]
    return torch.where((x * x + z * z <= 1.0) & (t > EPS), t, INF)


def _hit_cylinder(o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    a = d[0] ** 2 + d[2] ** 2
    b = o[0] * d[0] + o[2] * d[2]
    disc = b * b - a * (o[0] ** 2 + o[2] ** 2 - 1.0)
    t = (-b - disc.clamp_min(0).sqrt()) / a
    side = torch.where((disc >= 0) & ((o[1] + t * d[1]).abs() <= 1.0) & (t > EPS), t, INF)
    cap = _cap(o, d, torch.where(d[1] > 0, -1.0, 1.0))
    return _first(side, cap)


def _hit_cone(o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    # x^2 + z^2 = u^2 with u = (1 - y) / 2 the radius at height y; A t^2 + 2 b t + c = 0
    u0, du = (1.0 - o[1]) / 2, -d[1] / 2
    a = d[0] ** 2 + d[2] ** 2 - du * du
    b = o[0] * d[0] + o[2] * d[2] - u0 * du
    c = o[0] ** 2 + o[2] ** 2 - u0 * u0
    disc = b * b - a * c
    q = -(b + torch.copysign(disc.clamp_min(0).sqrt(), b))   # the stable pair of roots: q / a, c / q
    sides = []
    for t in (q / a, c / q):
        u = u0 + t * du
        sides.append(torch.where((disc >= 0) & (u >= 0) & (u <= 1) & (t > EPS), t, INF))
    return _first(torch.minimum(*sides), _cap(o, d, -1.0))


HIT = {ELLIPSOID: _hit_ellipsoid, BOX: _hit_box, CYLINDER: _hit_cylinder, CONE: _hit_cone}


def _intersect(kind: Tensor, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """t of the first hit and the part hit of candidates grouped by ``kind`` (k,), ascending (every
    producer of candidates orders them so): each kind's rays are one slice, with no gather or scatter."""
    bounds = torch.searchsorted(kind, torch.arange(len(HIT) + 1)).tolist()
    ts, parts = [], []
    for k, hit in HIT.items():
        a, b = bounds[k], bounds[k + 1]
        if b > a:
            t_k, part_k = hit(o[:, a:b], d[:, a:b])
            ts.append(t_k)
            parts.append(part_k)
    if not ts:
        return torch.full(kind.shape, INF), torch.zeros(kind.shape, dtype=torch.int64)
    return torch.cat(ts), torch.cat(parts)


def _by_kind(kind: Tensor, *xs: Tensor) -> tuple[Tensor, ...]:
    """``xs`` reordered stably by ``kind`` (candidates grouped by primitive kind, for :func:`_intersect`)."""
    order = torch.argsort(kind, stable=True)
    return tuple(x.index_select(0, order) for x in xs)


def _surface(kind: Tensor, part: Tensor, q: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Local normal (3, k; unnormalised, unscaled frame) and principal curvatures (2, k) at unit-frame
    points ``q`` (3, k) of primitives of half extents ``s`` (3, k), all planar."""
    zero = torch.zeros_like(q[0])
    side = part == 0
    sign = q.sign()
    # ellipsoid: gradient of sum(x^2 / s^2); curvatures from Gauss K and mean H of the ellipsoid
    x = q * s
    abc2 = (s[0] * s[1] * s[2]) ** 2
    h = planar_dot(x / (s * s), x / (s * s)).sqrt()
    gauss = 1.0 / (abc2 * h ** 4)
    mean = (planar_dot(s, s) - planar_dot(x, x)) / (2 * abc2 * h ** 3)
    spread = (mean * mean - gauss).clamp_min(0).sqrt()
    normal = {ELLIPSOID: q / s}
    curv = {ELLIPSOID: torch.stack([mean + spread, mean - spread])}
    # box: the axis of the face entered
    normal[BOX] = torch.nn.functional.one_hot(part.clamp(0, 2), 3).t().to(q.dtype) * sign
    curv[BOX] = torch.zeros_like(q[:2])
    # cylinder: side or cap
    cap = torch.stack([zero, sign[1], zero])
    normal[CYLINDER] = torch.where(side, torch.stack([q[0], zero, q[2]]) / s, cap)
    curv[CYLINDER] = torch.stack([torch.where(side, 1.0 / s[0], 0.0), zero])
    # cone: side normal is the gradient of x^2 + z^2 - ((1 - y) / 2)^2; k = cos(half angle) / distance to axis
    cone_side = torch.stack([2 * q[0], (1.0 - q[1]) / 2, 2 * q[2]]) / s
    normal[CONE] = torch.where(side, cone_side, -cap.abs())
    rho = s[0] * (q[0] ** 2 + q[2] ** 2).sqrt()
    cos_half = 2 * s[1] / (4 * s[1] ** 2 + s[0] ** 2).sqrt()
    curv[CONE] = torch.stack([torch.where(side, cos_half / rho.clamp_min(1 / MAX_CURVATURE), 0.0), zero])

    n_out, k_out = torch.zeros_like(q), torch.zeros_like(q[:2])
    for k in HIT:
        is_k = kind == k
        n_out = torch.where(is_k, normal[k], n_out)
        k_out = torch.where(is_k, curv[k], k_out)
    return n_out, k_out.clamp(-MAX_CURVATURE, MAX_CURVATURE)


# --------------------------------------------------------------------------------------------------
# Casting
# --------------------------------------------------------------------------------------------------

def _cones(prims: Primitives, scene: Tensor, origin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per group, the cone from its origin around each primitive's bounding sphere: flat primitive
    indices (G, P), unit axes (G, P, 3) and cosines of the half angles (G, P)."""
    P = prims.per_scene
    flat = scene[:, None] * P + torch.arange(P)                      # (G, P)
    rel = prims.centre[flat] - origin[:, None]                        # (G, P, 3)
    dist = rel.norm(dim=-1)
    radius = prims.radius[flat]
    cos = (1.0 - (radius / dist) ** 2).clamp_min(0).sqrt() - 1e-4    # the margin keeps culling conservative
    cos = torch.where(dist <= radius, -2.0, cos)                      # origin inside: every ray may hit
    cos = torch.where(prims.kind[flat] < 0, 2.0, cos)                 # padding: no ray hits
    return flat, rel / dist.clamp_min(1e-9)[..., None], cos


def _candidates(prims: Primitives, scene: Tensor, origin: Tensor, dirs: Tensor,
                active: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """(group, ray, flat primitive) triples whose ray enters the primitive's bounding cone."""
    _, G, N = dirs.shape
    P = prims.per_scene
    flat, axis, cos = _cones(prims, scene, origin)
    axis = axis.transpose(1, 2)                                       # (G, 3, P)
    dirs = dirs.permute(1, 2, 0)                                      # (G, N, 3)
    if active is not None:
        dirs = torch.where(active[..., None], dirs, float("nan"))      # NaN fails every comparison
    found = []
    block = max(1, CULL_BLOCK // max(1, N * P))
    for g0 in range(0, G, block):
        g1 = min(G, g0 + block)
        inside = torch.bmm(dirs[g0:g1], axis[g0:g1]) >= cos[g0:g1, None, :]   # (g, N, P)
        g, n, p = inside.nonzero(as_tuple=True)
        found.append((g + g0, n, p))
    g, n, p = (torch.cat(x) for x in zip(*found))
    fp = flat[g, p]
    return _by_kind(prims.kind.index_select(0, fp), g, n, fp)


def pixel_boxes(prims: Primitives, scene: Tensor, rot: Tensor, centre: Tensor, focal: float,
                resolution: int) -> Tensor:
    """The inclusive pixel ranges (V, P, 4) = (x0, x1, y0, y1) of pinhole views that may see each primitive:
    the image-space box of its projected bounding sphere (a sphere across the camera plane: every pixel;
    one behind it, or padding: none, x1 < x0).

    Views are ``rot`` (V, 3, 3) camera -> world and ``centre`` (V, 3); pixels row-major, principal point at
    the image centre."""
    P, R = prims.per_scene, resolution
    flat = scene[:, None] * P + torch.arange(P)                                      # (V, P)
    c = ((prims.centre[flat] - centre[:, None])[..., None] * rot[:, None]).sum(2)   # R^T (c - o), (V, P, 3)
    x, y, z = c.unbind(-1)
    r = prims.radius[flat]
    across = z <= r * 1.01                       # the sphere reaches (nearly) to the camera plane

    def extent(a: Tensor) -> tuple[Tensor, Tensor]:
        """Pixel index range of the sphere's projection along one image axis: the tangents from the camera
        to the circle (a, z) of radius r have slopes (a z -+ r sqrt(a^2 + z^2 - r^2)) / (z^2 - r^2)."""
        root = sqrt_((a * a + z * z - r * r).clamp_min(0))
        denominator = (z * z - r * r).clamp_min(1e-9)
        lo = (a * z - r * root) / denominator
        hi = (a * z + r * root) / denominator
        # across the camera plane the projection is unbounded, except on the side the sphere is clear of
        lo = torch.where(across, torch.where(a - r > 0, (a - r) / (z + r), -INF), lo) * focal + R / 2
        hi = torch.where(across, torch.where(a + r < 0, (a + r) / (z + r), INF), hi) * focal + R / 2
        first = (lo - 1.0).clamp(-1, R).floor().long().clamp_min(0)          # pixel j is centred at j + 0.5
        last = hi.clamp(-1, R).floor().long().clamp_max(R - 1)
        return first, last

    x0, x1 = extent(x)
    y0, y1 = extent(y)
    seen = (prims.kind[flat] >= 0) & (z + r > 0)
    return torch.stack([x0, torch.where(seen, x1, -1), y0, y1], dim=-1)


def _to_local(prims: Primitives, scene: Tensor, origin: Tensor, dirs: Tensor, g: Tensor, ray: Tensor,
              fp: Tensor) -> tuple[Tensor, Tensor]:
    """Candidate rays (group ``g``, flat ray ``ray``, flat primitive ``fp``) in their primitives' unit frames,
    planar (3, k): origins R^T (o - c) / s, computed once per (group, primitive) pair and gathered where
    the groups have more candidates than pairs (many rays each), else per candidate (the same floats);
    directions diag(1 / s) R^T d from the primitives' ``to_unit`` columns."""
    P = prims.per_scene
    if len(g) < len(scene) * P:
        o_l = (rotate_back(prims.rot[fp], origin[g] - prims.centre[fp]) / prims.scale[fp]).t()
    else:
        flat = (scene[:, None] * P + torch.arange(P)).reshape(-1)               # (G * P,)
        o_pair = rotate_back(prims.rot[flat], origin.repeat_interleave(P, 0) - prims.centre[flat]) / prims.scale[flat]
        o_l = o_pair.t().contiguous().index_select(1, g * P + fp % P)           # (3, k)
    d = dirs.reshape(3, -1).index_select(1, ray)                                 # (3, k) world
    return o_l, planar_matvec(prims.to_unit.index_select(1, fp), d)


def _room(prims: Primitives, scene: Tensor, origin: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Exit distance, face id and inward normal (3, G * N) of rays leaving the room box from inside.

    One axis at a time on (G, N) planes: the distance to the wall ahead is ``gap / |d|`` with ``gap >= 0``,
    so a ray parallel to the walls (d = 0) gets +inf without a test; on ties the lower axis wins."""
    lo, hi = prims.room_lo[scene], prims.room_hi[scene]                         # (G, 3)
    for axis in range(3):
        d = dirs[axis]                                                           # (G, N)
        ahead = d > 0
        gap = torch.where(ahead, (hi[:, axis] - origin[:, axis])[:, None], (origin[:, axis] - lo[:, axis])[:, None])
        t_axis = gap / d.abs()
        face_axis = ahead.to(torch.uint8).add_(2 * axis)
        if axis == 0:
            t, face = t_axis, face_axis
        else:
            nearer = t_axis < t
            t = torch.where(nearer, t_axis, t)
            face = torch.where(nearer, face_axis, face)
    face = face.long()
    return t, face, _FACE_NORMAL.index_select(1, face.reshape(-1))


def nearest_hit(prims: Primitives, scene: Tensor, origin: Tensor, dirs: Tensor) -> Hits:
    """First surface hit by rays ``dirs`` (3, G, N; unit, planar) from ``origin`` (G, 3) in scenes ``scene`` (G,);
    every ray is culled against every primitive's bounding cone. The tests' reference for the compiled
    :func:`view_hits` and :func:`first_hit_t`, which the renderer runs."""
    _, G, N = dirs.shape
    t, surface, normal = _room(prims, scene, origin, dirs)
    texture = (origin.t()[..., None] + t * dirs).reshape(3, -1)              # (3, G * N)
    t, surface = t.reshape(-1), surface.reshape(-1)                           # (G * N,)
    curvature = torch.zeros(2, G * N)

    g, n, fp = _candidates(prims, scene, origin, dirs, None)
    if g.numel():
        ray = g * N + n
        o_l, d_l = _to_local(prims, scene, origin, dirs, g, ray, fp)
        kind = prims.kind.index_select(0, fp)
        tk, part = _intersect(kind, o_l, d_l)
        best = t.scatter_reduce(0, ray, tk, "amin")
        won = ((tk == best.index_select(0, ray)) & (tk < t.index_select(0, ray))).nonzero().squeeze(1)
        # equal t on two primitives (where parts of an object touch): keep the later primitive
        fp_won = fp.index_select(0, won)
        last = torch.full((G * N,), -1, dtype=torch.int64).scatter_reduce(0, ray[won], fp_won, "amax")
        k = won[last[ray[won]] == fp_won]
        r, fk, tk = ray.index_select(0, k), fp.index_select(0, k), tk.index_select(0, k)
        s = prims.scale.index_select(0, fk).t()                               # (3, k)
        q = torch.addcmul(o_l.index_select(1, k), tk, d_l.index_select(1, k))   # (3, k)
        local_normal, curv = _surface(kind.index_select(0, k), part.index_select(0, k), q, s)
        world_normal = planar_matvec(prims.to_world.index_select(1, fk), local_normal)    # (3, k)
        # unit, and facing the ray origin (room normals face inwards already)
        away = planar_dot(world_normal, dirs.reshape(3, -1).index_select(1, r)) > 0
        world_normal = world_normal * (torch.where(away, -1.0, 1.0) / planar_dot(world_normal, world_normal).sqrt())
        t.index_copy_(0, r, tk)
        curvature.index_copy_(1, r, curv)
        texture.index_copy_(1, r, q * s)
        normal.index_copy_(1, r, world_normal)
        surface.index_copy_(0, r, ROOM_FACES + fk % prims.per_scene)

    return Hits(t=t.reshape(G, N), normal=normal.reshape(3, G, N), surface=surface.reshape(G, N),
                curvature=curvature.reshape(2, G, N), texture_point=texture.reshape(3, G, N))


def occluded(prims: Primitives, scene: Tensor, origin: Tensor, dirs: Tensor, t_max: Tensor,
             active: Tensor) -> Tensor:
    """Whether a primitive lies on each active ray ``dirs`` (3, G, N; planar) before ``t_max`` (G, N);
    inactive rays are False. The tests' reference for the compiled :func:`shadowed`, which the renderer
    runs."""
    _, G, N = dirs.shape
    blocked = torch.zeros(G * N, dtype=torch.bool)
    g, n, fp = _candidates(prims, scene, origin, dirs, active)
    if g.numel():
        ray = g * N + n
        o_l, d_l = _to_local(prims, scene, origin, dirs, g, ray, fp)
        tk, _ = _intersect(prims.kind.index_select(0, fp), o_l, d_l)
        blocked[ray[tk < t_max.reshape(-1).index_select(0, ray)]] = True
    return blocked.reshape(G, N)


# --------------------------------------------------------------------------------------------------
# Whole views: the compiled loops of taskonomy.bank.render.kernels
# --------------------------------------------------------------------------------------------------

def _geometry(prims: Primitives) -> tuple[np.ndarray, ...]:
    return (prims.kind.numpy(), prims.centre.numpy(), prims.rot.numpy(), prims.scale.numpy(), prims.to_unit.numpy())


def view_hits(prims: Primitives, scene: Tensor, rot: Tensor, origin: Tensor, dirs: Tensor, focal: float,
              resolution: int) -> Hits:
    """:func:`nearest_hit` of the pixel rays ``dirs`` (3, V, R * R; unit, planar, row-major) of pinhole views
    ``rot`` (V, 3, 3) camera -> world at ``origin`` (V, 3), each ray trying only the primitives whose
    :func:`pixel_boxes` hold its pixel (kernels.primary_hits)."""
    _, V, N = dirs.shape
    box = pixel_boxes(prims, scene, rot, origin, focal, resolution)
    t, surface = torch.empty(V, N), torch.empty(V, N, dtype=torch.int64)
    normal, curvature, texture = torch.empty(3, V, N), torch.empty(2, V, N), torch.empty(3, V, N)
    kernels.primary_hits(*_geometry(prims), prims.room_lo.numpy(), prims.room_hi.numpy(), prims.per_scene,
                         scene.numpy(), origin.contiguous().numpy(), dirs.contiguous().numpy(), box.numpy(),
                         t.numpy(), normal.numpy(), surface.numpy(), curvature.numpy(), texture.numpy())
    return Hits(t=t, normal=normal, surface=surface, curvature=curvature, texture_point=texture)


def first_hit_t(prims: Primitives, scene: Tensor, origin: Tensor, dirs: Tensor) -> Tensor:
    """:func:`nearest_hit`'s distances alone, (G, N), for a few rays per origin (placing the cameras):
    each ray against every primitive of its scene (kernels.first_hit_t)."""
    t = torch.empty(dirs.shape[1:])
    kernels.first_hit_t(*_geometry(prims), prims.radius.numpy(), prims.room_lo.numpy(), prims.room_hi.numpy(),
                        prims.per_scene, scene.numpy(), origin.contiguous().numpy(), dirs.contiguous().numpy(),
                        t.numpy())
    return t


def shadowed(prims: Primitives, scene: Tensor, origin: Tensor, dirs: Tensor, t_max: Tensor,
             active: Tensor, run: int = SHADOW_RUN) -> Tensor:
    """:func:`occluded` for many rays per origin (the shadow rays of whole views), culled first for runs
    of ``run`` consecutive rays (close in direction: pixels of an image row) and then ray by ray; each
    ray stops at its first blocker (kernels.shadowed). ``run=1`` for rays that are not neighbours (the
    visibility rays that place the cameras)."""
    blocked = torch.zeros(t_max.shape, dtype=torch.bool)
    kernels.shadowed(*_geometry(prims), prims.radius.numpy(), prims.per_scene, scene.numpy(),
                     origin.contiguous().numpy(), dirs.contiguous().numpy(), t_max.contiguous().numpy(),
                     active.contiguous().numpy(), run, blocked.numpy())
    return blocked
