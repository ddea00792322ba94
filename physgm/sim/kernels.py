"""MLS-MPM substep kernels (warp), one per algorithm step as in Hu et al. 2018:
``p2g`` (particle → grid transfer with APIC + MLS stress), ``grid_update`` (momentum →
velocity, gravity, walls) and ``g2p`` (grid → particle, deformation update, plastic return
map, advection; sticky walls also hold the particles touching them). Quadratic B-spline
weights over a 3×3×3 stencil.

Batched: the kernels advance B independent objects at once. Particle p belongs to object
``pobj[p]``; object b has its own grid block ``[b]`` of every grid array (B, res, res, res),
its own material (``mats[b]``) and substep (``obj_dt[b]`` [s], ``obj_nsub[b]`` substeps per
frame). Substep ``s`` of a frame moves object b only while ``s < obj_nsub[b]`` and
``obj_live[b] != 0`` (a member that blew up or escaped is masked out), so every object runs
exactly its own substeps: the result of one object does not depend on the others.

Guards live inside the kernels so that a blow-up can never read or write outside the grid
(the classic "CUDA error 700" of MPM codes): a particle with a non-finite state or whose
stencil would leave the grid is skipped and counted in ``flags[b]``:
flags[b, 0] = non-finite particles, flags[b, 1] = particles outside the grid,
flags[b, 2] = particles clamped at the domain's edge for the first time (escaped).

On CPU, warp runs a kernel on one thread; ``stepper.Stepper`` runs one particle range per
thread at once, each into its own P2G buffer, which ``grid_update`` sums (in a fixed order,
so results are deterministic). Only each object's box of cells that its particles touch
(``bounds``, gathered by ``g2p``) is cleared and updated.
"""
from __future__ import annotations

import warp as wp

from physgm.sim.constitutive import MaterialParams, update

BOUNDARY_CELLS = 3  # walls are the planes 3·dx from each face (the floor: y = 3·dx);
# grid nodes on or beyond a wall plane get the boundary condition
STICKY = wp.constant(0)
SLIP = wp.constant(1)
SEPARATE = wp.constant(2)
BOUNDARY_KIND = {"sticky": 0, "slip": 1, "separate": 2}


@wp.func
def bspline_weights(fx: wp.vec3):
    """Rows 0..2: quadratic B-spline weights of stencil offsets 0, 1, 2 per axis."""
    w0 = wp.cw_mul(wp.vec3(1.5) - fx, wp.vec3(1.5) - fx) * 0.5
    d1 = fx - wp.vec3(1.0)
    w1 = wp.vec3(0.75) - wp.cw_mul(d1, d1)
    d2 = fx - wp.vec3(0.5)
    w2 = wp.cw_mul(d2, d2) * 0.5
    return wp.mat33(w0[0], w0[1], w0[2], w1[0], w1[1], w1[2], w2[0], w2[1], w2[2])


@wp.func
def stencil_base(xp: wp.vec3, inv_dx: float, res: int):
    """(base cell, fractional offset, ok) of the stencil of a particle at xp [m]."""
    g = xp * inv_dx
    base = wp.vec3i(int(wp.floor(g[0] - 0.5)), int(wp.floor(g[1] - 0.5)), int(wp.floor(g[2] - 0.5)))
    ok = True
    for a in range(3):
        if base[a] < 0 or base[a] > res - 3:
            ok = False
    fx = g - wp.vec3(float(base[0]), float(base[1]), float(base[2]))
    return base, fx, ok


@wp.func
def moves(b: int, s: int, obj_live: wp.array(dtype=int), obj_nsub: wp.array(dtype=int)):
    """Whether object b takes substep s of the current frame."""
    return obj_live[b] != 0 and s < obj_nsub[b]


@wp.kernel
def p2g(x: wp.array(dtype=wp.vec3), v: wp.array(dtype=wp.vec3), C: wp.array(dtype=wp.mat33),
        tau: wp.array(dtype=wp.mat33), vol: wp.array(dtype=float),
        mass: wp.array(dtype=float), pobj: wp.array(dtype=int), obj_dt: wp.array(dtype=float),
        obj_live: wp.array(dtype=int), obj_nsub: wp.array(dtype=int), s: int, inv_dx: float,
        res: int, grid_mv: wp.array4d(dtype=wp.vec3), grid_m: wp.array4d(dtype=float),
        flags: wp.array2d(dtype=int)):
    p = wp.tid()
    b = pobj[p]
    if not moves(b, s, obj_live, obj_nsub):
        return
    xp = x[p]
    if not (wp.isfinite(xp) and wp.isfinite(v[p]) and wp.isfinite(C[p]) and wp.isfinite(tau[p])):
        wp.atomic_add(flags, b, 0, 1)  # never scatter a NaN into the grid
        return
    base, fx, ok = stencil_base(xp, inv_dx, res)
    if not ok:
        wp.atomic_add(flags, b, 1, 1)
        return
    W = bspline_weights(fx)
    dt = obj_dt[b]
    # MLS-MPM: the stress force folds into the affine momentum term.
    affine = tau[p] * (-dt * vol[p] * 4.0 * inv_dx * inv_dx) + mass[p] * C[p]
    mv = mass[p] * v[p]
    dx = 1.0 / inv_dx
    for i in range(3):
        for j in range(3):
            for k in range(3):
                dpos = (wp.vec3(float(i), float(j), float(k)) - fx) * dx
                weight = W[i, 0] * W[j, 1] * W[k, 2]
                gi = base[0] + i
                gj = base[1] + j
                gk = base[2] + k
                wp.atomic_add(grid_mv, b, gi, gj, gk, weight * (mv + affine * dpos))
                wp.atomic_add(grid_m, b, gi, gj, gk, weight * mass[p])


@wp.func
def wall(v: wp.vec3, axis: int, outward: float, kind: int, friction: float):
    """Apply one wall (outward normal n = outward · e_axis) to a grid velocity.

    sticky: v = 0. slip: the normal component is removed. separate: only an inward normal
    component (v·n > 0, the node presses on the wall) is removed, so objects can leave.
    Coulomb friction (tangential speed reduced by friction · |v·n|) acts only where the
    node presses on the wall: a node moving away keeps its tangential velocity.
    """
    if kind == STICKY:
        return wp.vec3(0.0)
    n = wp.vec3(0.0)
    n[axis] = outward
    vn = wp.dot(v, n)
    if vn <= 0.0 and kind == SEPARATE:
        return v  # moving away from the wall: free
    vt = v - vn * n
    if vn > 0.0 and friction > 0.0:
        vt_len = wp.length(vt)
        if vt_len > 0.0:
            vt = vt * wp.max(0.0, 1.0 - friction * vn / vt_len)
    return vt


@wp.func
def held_by_sticky_wall(xp: wp.vec3, inv_dx: float, res: int):
    """Whether a particle at xp [m] touches a wall: it lies within one cell of a wall plane
    (or beyond it), where the wall's nodes carry at least 1/8 of its B-spline weight. Sticky
    walls hold such particles in place: zeroing the wall nodes alone only slows them, and
    the free nodes above lift them off again (a jelly then bounces as on a slip floor)."""
    g = xp * inv_dx
    near = float(BOUNDARY_CELLS) + 1.0
    far = float(res - BOUNDARY_CELLS) - 1.0
    held = False
    for a in range(3):
        if g[a] < near or g[a] > far:
            held = True
    return held


@wp.func
def node_velocity(grid_mv: wp.array4d(dtype=wp.vec3), grid_m: wp.array4d(dtype=float),
                  n_buffers: int, n_objects: int, b: int, i: int, j: int, k: int, dt: float,
                  gravity: wp.vec3, res: int, kind: int, friction: float):
    """Velocity [m/s] of node (i, j, k) of object b: its P2G buffers summed in buffer order
    (buffer t of object b is block t·n_objects + b), momentum → velocity, gravity, walls."""
    mass = float(0.0)
    mv = wp.vec3(0.0)
    for t in range(n_buffers):
        mass += grid_m[t * n_objects + b, i, j, k]
        mv += grid_mv[t * n_objects + b, i, j, k]
    if mass <= 0.0:
        return wp.vec3(0.0)
    v = mv / mass + dt * gravity
    idx = wp.vec3i(i, j, k)
    for a in range(3):
        if idx[a] <= BOUNDARY_CELLS:
            v = wall(v, a, -1.0, kind, friction)
        if idx[a] >= res - BOUNDARY_CELLS:
            v = wall(v, a, 1.0, kind, friction)
    return v


# CPU: a kernel runs on one thread, so a launch per object that loops over the object's box
# of cells (read on the device, where g2p left it) costs no more than a launch per cell and
# needs nothing from the host: a whole frame can be captured once and replayed.
@wp.kernel
def clear_box(grid_mv: wp.array4d(dtype=wp.vec3), grid_m: wp.array4d(dtype=float),
              box_lo: wp.array(dtype=wp.vec3i), box_hi: wp.array(dtype=wp.vec3i),
              obj_live: wp.array(dtype=int), obj_nsub: wp.array(dtype=int), s: int):
    """Zero the box of cells of each moving object in one P2G buffer (B,): one thread per
    object."""
    b = wp.tid()
    if not moves(b, s, obj_live, obj_nsub):
        return
    lo = box_lo[b]
    hi = box_hi[b]
    for i in range(lo[0], hi[0] + 1):
        for j in range(lo[1], hi[1] + 1):
            for k in range(lo[2], hi[2] + 1):
                grid_mv[b, i, j, k] = wp.vec3(0.0)
                grid_m[b, i, j, k] = 0.0


@wp.kernel
def grid_update_box(grid_mv: wp.array4d(dtype=wp.vec3), grid_m: wp.array4d(dtype=float),
                    n_buffers: int, n_objects: int, grid_v: wp.array4d(dtype=wp.vec3),
                    box_lo: wp.array(dtype=wp.vec3i), box_hi: wp.array(dtype=wp.vec3i),
                    slab: int, n_slabs: int, obj_dt: wp.array(dtype=float),
                    obj_live: wp.array(dtype=int), obj_nsub: wp.array(dtype=int), s: int,
                    gravity: wp.vec3, res: int, kind: int, friction: float):
    """Node velocities of slab ``slab`` (of ``n_slabs``, along x) of each moving object's
    box: one thread per object."""
    b = wp.tid()
    if not moves(b, s, obj_live, obj_nsub):
        return
    lo = box_lo[b]
    hi = box_hi[b]
    ext = hi[0] - lo[0] + 1
    dt = obj_dt[b]
    for i in range(lo[0] + ext * slab // n_slabs, lo[0] + ext * (slab + 1) // n_slabs):
        for j in range(lo[1], hi[1] + 1):
            for k in range(lo[2], hi[2] + 1):
                grid_v[b, i, j, k] = node_velocity(grid_mv, grid_m, n_buffers, n_objects, b,
                                                   i, j, k, dt, gravity, res, kind, friction)


@wp.kernel
def update_boxes(bounds: wp.array3d(dtype=int), box_lo: wp.array(dtype=wp.vec3i),
                 box_hi: wp.array(dtype=wp.vec3i), res: int, obj_live: wp.array(dtype=int),
                 obj_nsub: wp.array(dtype=int), s: int):
    """Each moving object's box for its next substep: the stencil cells its particles reached
    in g2p (bounds (T, B, 6), per thread), clipped to the grid; bounds are reset for the next
    g2p. An object none of whose particles moved keeps its box."""
    b = wp.tid()
    if not moves(b, s, obj_live, obj_nsub):
        return
    lo = wp.vec3i(res, res, res)
    hi = wp.vec3i(-1, -1, -1)
    for t in range(bounds.shape[0]):
        for a in range(3):
            lo[a] = wp.min(lo[a], bounds[t, b, a])
            hi[a] = wp.max(hi[a], bounds[t, b, 3 + a])
            bounds[t, b, a] = 2147483647
            bounds[t, b, 3 + a] = -2147483647 - 1
    if hi[0] < lo[0]:
        return
    for a in range(3):
        lo[a] = wp.clamp(lo[a], 0, res - 1)
        hi[a] = wp.clamp(hi[a], lo[a], res - 1)
    box_lo[b] = lo
    box_hi[b] = hi


# CUDA: a thread per node of every object's whole grid (no device → host reads).
@wp.kernel
def clear_grid(grid_mv: wp.array4d(dtype=wp.vec3), grid_m: wp.array4d(dtype=float),
               obj_live: wp.array(dtype=int), obj_nsub: wp.array(dtype=int), s: int):
    """Zero one P2G buffer (B, res, res, res) of the moving objects."""
    b, i, j, k = wp.tid()
    if moves(b, s, obj_live, obj_nsub):
        grid_mv[b, i, j, k] = wp.vec3(0.0)
        grid_m[b, i, j, k] = 0.0


@wp.kernel
def grid_update(grid_mv: wp.array4d(dtype=wp.vec3), grid_m: wp.array4d(dtype=float),
                n_buffers: int, n_objects: int, grid_v: wp.array4d(dtype=wp.vec3),
                obj_dt: wp.array(dtype=float), obj_live: wp.array(dtype=int),
                obj_nsub: wp.array(dtype=int), s: int, gravity: wp.vec3, res: int, kind: int,
                friction: float):
    """Node velocities of every moving object's whole grid: a thread per node."""
    b, i, j, k = wp.tid()
    if moves(b, s, obj_live, obj_nsub):
        grid_v[b, i, j, k] = node_velocity(grid_mv, grid_m, n_buffers, n_objects, b, i, j, k,
                                           obj_dt[b], gravity, res, kind, friction)


@wp.kernel
def g2p(x: wp.array(dtype=wp.vec3), v: wp.array(dtype=wp.vec3), C: wp.array(dtype=wp.mat33),
        Fe: wp.array(dtype=wp.mat33), Ftot: wp.array(dtype=wp.mat33),
        pstate: wp.array(dtype=wp.vec3), tau: wp.array(dtype=wp.mat33),
        pobj: wp.array(dtype=int), mats: wp.array(dtype=MaterialParams),
        obj_dt: wp.array(dtype=float), obj_live: wp.array(dtype=int),
        obj_nsub: wp.array(dtype=int), s: int, inv_dx: float, res: int, lo: float, hi: float,
        kind: int, grid_v: wp.array4d(dtype=wp.vec3), escaped: wp.array(dtype=int),
        flags: wp.array2d(dtype=int), max_speed: wp.array(dtype=float),
        bounds: wp.array2d(dtype=int)):
    p = wp.tid()
    b = pobj[p]
    if not moves(b, s, obj_live, obj_nsub):
        return
    xp = x[p]
    if not wp.isfinite(xp):
        return
    base, fx, ok = stencil_base(xp, inv_dx, res)
    if not ok:
        return
    W = bspline_weights(fx)
    dt = obj_dt[b]
    new_v = wp.vec3(0.0)
    new_C = wp.mat33(0.0)
    for i in range(3):
        for j in range(3):
            for k in range(3):
                dpos = wp.vec3(float(i), float(j), float(k)) - fx  # in cells
                weight = W[i, 0] * W[j, 1] * W[k, 2]
                gv = grid_v[b, base[0] + i, base[1] + j, base[2] + k]
                new_v = new_v + weight * gv
                new_C = new_C + (4.0 * inv_dx * weight) * wp.outer(gv, dpos)
    if kind == STICKY:  # particle side of sticky walls: what touches a wall stays
        if held_by_sticky_wall(xp, inv_dx, res):
            new_v = wp.vec3(0.0)
    step = wp.identity(n=3, dtype=float) + dt * new_C
    Fe_new, ps, tau_new = update(step * Fe[p], pstate[p], mats[b])
    xn = xp + dt * new_v
    if not (wp.isfinite(new_v) and wp.isfinite(xn) and wp.isfinite(Fe_new)):
        wp.atomic_add(flags, b, 0, 1)
        x[p] = xn
        return
    clamped = wp.vec3(wp.clamp(xn[0], lo, hi), wp.clamp(xn[1], lo, hi), wp.clamp(xn[2], lo, hi))
    if wp.length_sq(clamped - xn) > 0.0 and escaped[p] == 0:
        escaped[p] = 1
        wp.atomic_add(flags, b, 2, 1)
    wp.atomic_max(max_speed, b, wp.length(new_v))
    # Stencil cells of the new position: the object's active box in its next substep.
    for a in range(3):
        c = int(wp.floor(clamped[a] * inv_dx - 0.5))
        wp.atomic_min(bounds, b, a, c)
        wp.atomic_max(bounds, b, 3 + a, c + 2)
    x[p] = clamped
    v[p] = new_v
    C[p] = new_C
    Fe[p] = Fe_new
    Ftot[p] = step * Ftot[p]
    pstate[p] = ps
    tau[p] = tau_new
