"""MPM state on a warp device and the substep loop (P2G → grid update → G2P).

On CPU a warp kernel runs on a single thread, so ``Stepper`` splits the particles into
``threads`` contiguous chunks and launches one kernel per chunk from a thread pool (warp
releases the GIL while a CPU kernel runs). Each P2G chunk scatters into its own grid
buffer; ``grid_update`` sums them in a fixed order, so a run is deterministic for a given
thread count. Only the box of cells that the particles touch is cleared and updated (on
CUDA the whole grid, which avoids a device→host read per substep).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import warp as wp

from physgm.sim import kernels as K
from physgm.sim.constitutive import MaterialParams

INT_MAX = np.iinfo(np.int32).max
INT_MIN = np.iinfo(np.int32).min


def default_threads(device: str, requested: int) -> int:
    if not device.startswith("cpu"):
        return 1
    return max(1, requested or (os.cpu_count() or 1))


class Stepper:
    """Device arrays of one simulation and its substep.

    Particle arrays: x (N,3) [m], v (N,3) [m/s], C (N,3,3) [1/s] (APIC affine velocity),
    Fe (N,3,3) elastic deformation, Ftot (N,3,3) total deformation, pstate (N,3) plastic
    state (``constitutive``: slot 0 J_P / ᾱ / q, slot 1 sand v_c; ``pstate0`` may be (N,),
    which fills slot 0), tau (N,3,3) Kirchhoff stress [Pa], vol (N,) [m³], mass (N,) [kg].
    """

    def __init__(self, x0: np.ndarray, v0: np.ndarray, vol: np.ndarray, density: float,
                 pstate0: np.ndarray, mat: MaterialParams, res: int, dx: float, device: str,
                 threads: int = 0):
        n = x0.shape[0]
        self.n, self.res, self.dx, self.mat, self.device = n, res, dx, mat, device
        self.threads = min(default_threads(device, threads), max(1, n // 256))
        eye = np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3))
        with wp.ScopedDevice(device):
            self.x = wp.array(x0.astype(np.float32), dtype=wp.vec3)
            self.v = wp.array(v0.astype(np.float32), dtype=wp.vec3)
            self.C = wp.zeros(n, dtype=wp.mat33)
            self.Fe = wp.array(eye, dtype=wp.mat33)
            self.Ftot = wp.array(eye, dtype=wp.mat33)
            ps = np.zeros((n, 3), np.float32)
            if np.ndim(pstate0) == 1:
                ps[:, 0] = pstate0
            else:
                ps[:] = pstate0
            self.pstate = wp.array(ps, dtype=wp.vec3)
            self.tau = wp.zeros(n, dtype=wp.mat33)  # stress of F_E = I is zero for every model
            self.vol = wp.array(vol.astype(np.float32), dtype=float)
            self.mass = wp.array((vol * density).astype(np.float32), dtype=float)
            self.grid_mv = wp.zeros((self.threads, res, res, res), dtype=wp.vec3)
            self.grid_m = wp.zeros((self.threads, res, res, res), dtype=float)
            self.grid_v = wp.zeros((res, res, res), dtype=wp.vec3)
            self.escaped = wp.zeros(n, dtype=int)
            # per-thread guard counters (see kernels): summed / maxed on the host
            self.flags = wp.zeros(3 * self.threads, dtype=int)
            self.speed = wp.zeros(self.threads, dtype=float)
            self.bounds = wp.zeros(6 * self.threads, dtype=int)
        edges = np.linspace(0, n, self.threads + 1).astype(int)
        self.chunks = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self.box = self._box_of(x0)

    # -- active box -------------------------------------------------------------------
    def _box_of(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cells = np.floor(x / self.dx - 0.5).astype(np.int64)
        return self._clip(cells.min(0), cells.max(0) + 2)

    def _clip(self, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        lo = np.clip(np.asarray(lo), 0, self.res - 1)
        hi = np.clip(np.asarray(hi), lo, self.res - 1)
        return lo, hi

    def _box_from_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        b = self.bounds.numpy().reshape(self.threads, 6)
        return self._clip(b[:, :3].min(0), b[:, 3:].max(0))

    # -- substep ----------------------------------------------------------------------
    def _map(self, fn, items) -> None:
        if self.pool is None:
            for item in items:
                fn(item)
        else:
            for fut in [self.pool.submit(fn, item) for item in items]:
                fut.result()

    def substep(self, dt: float, gravity: wp.vec3, kind: int, friction: float,
                lo: float, hi: float) -> None:
        cpu = self.device.startswith("cpu")
        if cpu:
            blo, bhi = self.box
        else:
            blo, bhi = np.zeros(3, int), np.full(3, self.res - 1)
        ext = tuple(int(e) for e in (bhi - blo + 1))
        inv_dx = 1.0 / self.dx

        def p2g(t: int) -> None:
            a, b = self.chunks[t]
            wp.launch(K.clear_box, dim=ext, inputs=[self.grid_mv[t], self.grid_m[t],
                                                    int(blo[0]), int(blo[1]), int(blo[2])])
            wp.launch(K.p2g, dim=b - a, inputs=[
                self.x[a:b], self.v[a:b], self.C[a:b], self.tau[a:b], self.vol[a:b],
                self.mass[a:b], inv_dx, dt, self.res, self.grid_mv[t], self.grid_m[t],
                self.flags[3 * t: 3 * t + 3]])

        def grid(slab: tuple[int, int]) -> None:
            i0, i1 = slab
            wp.launch(K.grid_update, dim=(i1 - i0, ext[1], ext[2]), inputs=[
                self.grid_mv, self.grid_m, self.threads, self.grid_v, i0, int(blo[1]),
                int(blo[2]), dt, gravity, self.res, kind, friction])

        def g2p(t: int) -> None:
            a, b = self.chunks[t]
            bounds = self.bounds[6 * t: 6 * t + 6]
            if cpu:
                bounds.assign(np.array([INT_MAX] * 3 + [INT_MIN] * 3, dtype=np.int32))
            wp.launch(K.g2p, dim=b - a, inputs=[
                self.x[a:b], self.v[a:b], self.C[a:b], self.Fe[a:b], self.Ftot[a:b],
                self.pstate[a:b], self.tau[a:b], self.mat, inv_dx, dt, self.res, lo, hi, kind,
                self.grid_v, self.escaped[a:b], self.flags[3 * t: 3 * t + 3],
                self.speed[t: t + 1], bounds])

        with wp.ScopedDevice(self.device):
            self._map(p2g, range(self.threads))
            edges = np.linspace(blo[0], bhi[0] + 1, self.threads + 1).astype(int)
            self._map(grid, [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a])
            self._map(g2p, range(self.threads))
        if cpu:
            self.box = self._box_from_bounds()

    def guards(self) -> tuple[np.ndarray, float]:
        """(counts [non-finite, outside grid, escaped], max particle speed [m/s]) so far."""
        return (self.flags.numpy().reshape(self.threads, 3).sum(0),
                float(self.speed.numpy().max()))

    def positions(self) -> np.ndarray:
        return self.x.numpy().copy()  # on CPU .numpy() is a view of the live buffer

    def velocities(self) -> np.ndarray:
        return self.v.numpy().copy()

    def deformation(self) -> np.ndarray:
        return self.Ftot.numpy().copy()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
