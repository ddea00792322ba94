"""MPM state of a batch of objects on a warp device, and its frame loop.

Every object has its own grid block, material and substep (``kernels``); the particles of
all objects sit in flat arrays laid out by ``layout.plan``. One frame is ``max n_sub``
substeps of P2G → grid update → G2P, each a handful of kernel launches for the whole batch.

CPU: warp runs a kernel on one thread, so thread t of a pool runs the launches over its own
range of particles, into its own P2G buffer. Each launch is recorded once
(``wp.launch(..., record_cmd=True)``) and replayed every substep with only its substep
index and extent changed: packing ~20 arguments per launch was half of the fixed cost of a
small substep. Only the box of cells each object's particles touch is cleared and updated.
CUDA: one thread, every object's whole grid; a frame's launches are captured once in a
CUDA graph and the graph is replayed every frame.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import warp as wp

from physgm.sim import kernels as K
from physgm.sim.constitutive import MaterialParams
from physgm.sim.layout import PARTICLES_PER_THREAD, plan

# warp records a CPU graph in one capture for the whole process: while it is open, warp
# operations from any thread (array creation included) would be recorded instead of run.
# Device arrays are therefore created and graphs recorded under this lock; everything
# else a stepper does replays graphs or reads host views, which a capture does not touch.
WARP_LOCK = threading.RLock()
# Below this many particles a frame runs as one recorded graph on one thread; from it on,
# each substep's phases are split over the threads (measured: benchmarks/bench_mpm.py).
PARALLEL_MIN_PARTICLES = 2048
INT_MAX = np.iinfo(np.int32).max
INT_MIN = np.iinfo(np.int32).min


def default_threads(device: str, requested: int) -> int:
    if not device.startswith("cpu"):
        return 1
    return max(1, requested or (os.cpu_count() or 1))


@dataclass
class Body:
    """One object's initial state: x0 (N, 3) [m], v0 (N, 3) [m/s], vol (N,) [m³],
    density [kg/m³], pstate0 (N,) (fills plastic slot 0) or (N, 3), its material, its
    substep dt [s] and substeps per frame n_sub."""

    x0: np.ndarray
    v0: np.ndarray
    vol: np.ndarray
    density: float
    pstate0: np.ndarray
    mat: MaterialParams
    dt: float
    n_sub: int


def _plastic(pstate0, n: int) -> np.ndarray:
    """(N, 3) plastic state from (N,) (slot 0) or (N, 3)."""
    p = np.asarray(pstate0, np.float32)
    if p.ndim == 2:
        return p
    out = np.zeros((n, 3), np.float32)
    out[:, 0] = p
    return out


def _box_of(x: np.ndarray, dx: float, res: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) cell indices (3,) of the box that the stencils of particles x (N, 3) [m] touch."""
    cells = np.floor(np.asarray(x) / dx - 0.5).astype(np.int64)
    lo = np.clip(cells.min(0), 0, res - 1)
    return lo, np.clip(cells.max(0) + 2, lo, res - 1)


def _flat(layout, arrays: list[np.ndarray], dtype) -> np.ndarray:
    n = sum(len(a) for a in arrays)
    out = np.zeros((n,) + arrays[0].shape[1:], dtype)
    for perm, a in zip(layout.perm, arrays):
        out[perm] = a
    return out


class Stepper:
    """Device arrays of a batch and its frame step.

    Flat particle arrays (N = Σ N_b, ``layout`` order): x (N,3) [m], v (N,3) [m/s],
    C (N,3,3) [1/s] (APIC affine velocity), Fe (N,3,3) elastic deformation, Ftot (N,3,3)
    total deformation, pstate (N,3) plastic state (``constitutive``), tau (N,3,3) Kirchhoff
    stress [Pa], vol (N,) [m³], mass (N,) [kg]. Per grid block: mats, dt [s], n_sub, live.
    Guard counters per thread and block: flags (T,B,3), speed (T,B) [m/s], bounds (T,B,6).
    """

    def __init__(self, bodies: list[Body], res: int, dx: float, device: str, threads: int = 0):
        n_total = sum(len(b.x0) for b in bodies)
        self.res, self.dx, self.device = res, dx, device
        self.cpu = device.startswith("cpu")
        self.threads = min(default_threads(device, threads),
                           max(1, n_total // PARTICLES_PER_THREAD))
        self.layout = lay = plan([len(b.x0) for b in bodies], [b.n_sub for b in bodies],
                                 self.threads)
        T, B = self.threads, len(bodies)
        self.n_objects, self.max_sub = B, int(lay.n_sub.max())
        blocks = [bodies[i] for i in lay.order]
        eye = np.broadcast_to(np.eye(3, dtype=np.float32), (n_total, 3, 3))
        ps = [_plastic(b.pstate0, len(b.x0)) for b in bodies]
        with WARP_LOCK, wp.ScopedDevice(device):
            self.x = wp.array(_flat(lay, [b.x0 for b in bodies], np.float32), dtype=wp.vec3)
            self.v = wp.array(_flat(lay, [b.v0 for b in bodies], np.float32), dtype=wp.vec3)
            self.C = wp.zeros(n_total, dtype=wp.mat33)
            self.Fe = wp.array(eye, dtype=wp.mat33)
            self.Ftot = wp.array(eye, dtype=wp.mat33)
            self.pstate = wp.array(_flat(lay, ps, np.float32), dtype=wp.vec3)
            self.tau = wp.zeros(n_total, dtype=wp.mat33)  # stress of F_E = I is zero
            self.vol = wp.array(_flat(lay, [b.vol for b in bodies], np.float32), dtype=float)
            self.mass = wp.array(_flat(lay, [b.vol * b.density for b in bodies], np.float32),
                                 dtype=float)
            self.pobj = wp.array(lay.pobj, dtype=int)
            self.mats = wp.array([b.mat for b in blocks], dtype=MaterialParams)
            self.obj_dt = wp.array(np.array([b.dt for b in blocks], np.float32), dtype=float)
            self.obj_nsub = wp.array(lay.n_sub.astype(np.int32), dtype=int)
            self.obj_live = wp.array(np.ones(B, np.int32), dtype=int)
            self.grid_mv = wp.zeros((T * B, res, res, res), dtype=wp.vec3)
            self.grid_m = wp.zeros((T * B, res, res, res), dtype=float)
            self.grid_v = wp.zeros((B, res, res, res), dtype=wp.vec3)
            self.escaped = wp.zeros(n_total, dtype=int)
            self.flags = wp.zeros((T, B, 3), dtype=int)
            self.speed = wp.zeros((T, B), dtype=float)
            unset = np.array([INT_MAX] * 3 + [INT_MIN] * 3, np.int32)
            self.bounds = wp.array(np.broadcast_to(unset, (T, B, 6)).copy(), dtype=int)
            boxes = [_box_of(b.x0, dx, res) for b in blocks]
            self.box_lo = wp.array(np.array([lo for lo, _ in boxes], np.int32), dtype=wp.vec3i)
            self.box_hi = wp.array(np.array([hi for _, hi in boxes], np.int32), dtype=wp.vec3i)
        self.pool = None
        self.graphs = None  # the recorded frame (``prepare``)
        self.parallel = False

    # -- launches ------------------------------------------------------------------------------
    def configure(self, gravity: wp.vec3, kind: int, friction: float, lo: float, hi: float,
                  parallel: bool | None = None) -> None:
        """Fix the run's constants (gravity [m/s²], wall kind and friction, particle clamp
        range [lo, hi] [m]) and how a frame runs: on CPU, ``parallel`` runs each phase of a
        substep on the pool's threads (one P2G buffer each; for large objects), otherwise the
        whole frame is one recorded CPU graph replayed on the calling thread; None: parallel
        from ``PARALLEL_MIN_PARTICLES`` particles on."""
        self.consts = (gravity, kind, friction, lo, hi)
        if parallel is None:
            parallel = len(self.layout.pobj) >= PARALLEL_MIN_PARTICLES
        self.parallel = bool(parallel and self.cpu and self.threads > 1)
        if self.parallel and self.pool is None:
            self.pool = ThreadPoolExecutor(self.threads - 1)

    def _buffer(self, t: int):
        B = self.n_objects
        return self.grid_mv[t * B:(t + 1) * B], self.grid_m[t * B:(t + 1) * B]

    def _scatter(self, t: int, s: int, n_moving: int) -> None:
        """Clear buffer t's boxes and scatter thread t's moving particles into it (CPU)."""
        mv, m = self._buffer(t)
        wp.launch(K.clear_box, dim=n_moving, inputs=[mv, m, self.box_lo, self.box_hi,
                                                     self.obj_live, self.obj_nsub, s])
        self._p2g(t, s, mv, m)

    def _p2g(self, t: int, s: int, mv, m) -> None:
        a = int(self.layout.starts[t])
        n = self.layout.moving_range(t, s)
        if n:
            b = a + n
            wp.launch(K.p2g, dim=n, inputs=[
                self.x[a:b], self.v[a:b], self.C[a:b], self.tau[a:b], self.vol[a:b],
                self.mass[a:b], self.pobj[a:b], self.obj_dt, self.obj_live, self.obj_nsub, s,
                1.0 / self.dx, self.res, mv, m, self.flags[t]])

    def _grid_cpu(self, slab: int, n_slabs: int, s: int, n_moving: int) -> None:
        gravity, kind, friction, _, _ = self.consts
        wp.launch(K.grid_update_box, dim=n_moving, inputs=[
            self.grid_mv, self.grid_m, self.threads, self.n_objects, self.grid_v, self.box_lo,
            self.box_hi, slab, n_slabs, self.obj_dt, self.obj_live, self.obj_nsub, s, gravity,
            self.res, kind, friction])

    def _g2p(self, t: int, s: int) -> None:
        _, kind, _, lo, hi = self.consts
        a = int(self.layout.starts[t])
        n = self.layout.moving_range(t, s)
        if n:
            b = a + n
            wp.launch(K.g2p, dim=n, inputs=[
                self.x[a:b], self.v[a:b], self.C[a:b], self.Fe[a:b], self.Ftot[a:b],
                self.pstate[a:b], self.tau[a:b], self.pobj[a:b], self.mats, self.obj_dt,
                self.obj_live, self.obj_nsub, s, 1.0 / self.dx, self.res, lo, hi, kind,
                self.grid_v, self.escaped[a:b], self.flags[t], self.speed[t], self.bounds[t]])

    def _boxes(self, s: int, n_moving: int) -> None:
        wp.launch(K.update_boxes, dim=n_moving, inputs=[
            self.bounds, self.box_lo, self.box_hi, self.res, self.obj_live, self.obj_nsub, s])

    def _substep_serial(self, s: int) -> None:
        """Substep s on the calling thread, buffer after buffer (CPU)."""
        n_moving = self.layout.moving_blocks(s)
        for t in range(self.threads):
            self._scatter(t, s, n_moving)
        self._grid_cpu(0, 1, s, n_moving)
        for t in range(self.threads):
            self._g2p(t, s)
        self._boxes(s, n_moving)

    def _substep_cuda(self, s: int) -> None:
        gravity, kind, friction, _, _ = self.consts
        full = (self.n_objects, self.res, self.res, self.res)
        mv, m = self._buffer(0)
        wp.launch(K.clear_grid, dim=full, inputs=[mv, m, self.obj_live, self.obj_nsub, s])
        self._p2g(0, s, mv, m)
        wp.launch(K.grid_update, dim=full, inputs=[
            self.grid_mv, self.grid_m, 1, self.n_objects, self.grid_v, self.obj_dt,
            self.obj_live, self.obj_nsub, s, gravity, self.res, kind, friction])
        self._g2p(0, s)

    def _record(self, launches) -> "wp.Graph":
        with wp.ScopedCapture(device=self.device) as capture:
            launches()
        return capture.graph

    def prepare(self) -> None:
        """Record the graphs of a frame (once; the launches run only when replayed)."""
        if self.graphs is not None:
            return
        with WARP_LOCK, wp.ScopedDevice(self.device):
            wp.load_module(K, device=self.device)
            if not self.parallel:
                step = self._substep_serial if self.cpu else self._substep_cuda
                self.graphs = self._record(lambda: [step(s) for s in range(self.max_sub)])
                return
            T, self.graphs = self.threads, []
            for s in range(self.max_sub):
                n = self.layout.moving_blocks(s)
                moving = [t for t in range(T) if self.layout.moving_range(t, s)]
                phases = [[self._record(lambda t=t: self._scatter(t, s, n)) for t in range(T)],
                          [self._record(lambda t=t: self._grid_cpu(t, T, s, n)) for t in range(T)],
                          [self._record(lambda t=t: self._g2p(t, s)) for t in moving]]
                self.graphs.append((phases, self._record(lambda: self._boxes(s, n))))

    def frame(self) -> None:
        """Advance every live object by one frame (its own n_sub substeps)."""
        self.prepare()
        if not self.parallel:
            wp.capture_launch(self.graphs)
            return
        for phases, boxes in self.graphs:
            for graphs in phases:  # one graph per thread, the first on this one
                futures = [self.pool.submit(wp.capture_launch, g) for g in graphs[1:]]
                wp.capture_launch(graphs[0])
                for fut in futures:
                    fut.result()
            wp.capture_launch(boxes)

    # -- state read-back ----------------------------------------------------------------------
    def kill(self, obj: int) -> None:
        """Mask object ``obj`` (its index in the caller's list) out of every later substep."""
        block = int(np.flatnonzero(self.layout.order == obj)[0])
        if self.cpu:
            self.obj_live.numpy()[block] = 0  # the live buffer: no warp operation
        else:
            with WARP_LOCK:
                live = self.obj_live.numpy()
                live[block] = 0
                self.obj_live.assign(live)

    def guards(self) -> tuple[np.ndarray, np.ndarray]:
        """Per object (caller's order): counts (B, 3) [non-finite, outside grid, escaped] and
        the max particle speed (B,) [m/s], so far."""
        counts = self.flags.numpy().sum(0)
        speed = self.speed.numpy().max(0)
        inv = np.argsort(self.layout.order)
        return counts[inv], speed[inv]

    def state(self) -> tuple[list, list, list]:
        """Per object: positions (N_b, 3), deformation (N_b, 3, 3), velocities (N_b, 3)."""
        x, F, v = self.x.numpy(), self.Ftot.numpy(), self.v.numpy()
        return ([x[p] for p in self.layout.perm], [F[p] for p in self.layout.perm],
                [v[p] for p in self.layout.perm])

    def plastic_state(self) -> list[np.ndarray]:
        """Per object: its plastic state (N_b, 3) (``constitutive``)."""
        ps = self.pstate.numpy()
        return [ps[p] for p in self.layout.perm]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
