"""Gaussians: covariances, PLY round trip in the 3DGS convention, deformation, particle
filling."""
import math

import numpy as np
import pytest
import torch
from plyfile import PlyData

from physgm.gaussians import (SH_C0, Gaussians, fill_particles, particles_to_gaussians,
                              quat_to_rotmat, rotmat_to_quat)


def random_gaussians(n=50, seed=0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians(means=torch.randn(n, 3, generator=g),
                     scales=torch.rand(n, 3, generator=g) * 0.1 + 0.01,
                     quats=torch.randn(n, 4, generator=g),
                     opacities=torch.rand(n, generator=g) * 0.98 + 0.01,
                     colors=torch.rand(n, 3, generator=g))


def rot_z(theta):
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_covariance_from_scales_and_quats():
    g = Gaussians.from_points(torch.zeros(1, 3), scale=0.1)
    g.scales = torch.tensor([[0.1, 0.2, 0.3]])
    theta = 0.7
    g.quats = torch.tensor([[math.cos(theta / 2), 0.0, 0.0, math.sin(theta / 2)]])  # about z
    R = rot_z(theta)
    expected = R @ torch.diag(torch.tensor([0.01, 0.04, 0.09])) @ R.T
    assert torch.allclose(g.covariances()[0], expected, atol=1e-6)


def test_quaternion_matrix_round_trip():
    q = torch.randn(200, 4, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    R = quat_to_rotmat(q)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(200, 3, 3),
                          atol=1e-12)
    assert torch.allclose(rotmat_to_quat(R), q, atol=1e-10)


def test_ply_round_trip_and_3dgs_header(tmp_path):
    g = random_gaussians()
    path = g.save_ply(tmp_path / "g.ply")
    names = PlyData.read(str(path))["vertex"].data.dtype.names
    for f in ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
              "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]:
        assert f in names
    raw = PlyData.read(str(path))["vertex"].data
    # storage convention: log scale, logit opacity, SH DC
    assert np.allclose(raw["scale_1"], np.log(g.scales[:, 1].numpy()), atol=1e-6)
    o = g.opacities.double().numpy()
    assert np.allclose(raw["opacity"], np.log(o / (1 - o)), atol=1e-5)
    assert np.allclose(raw["f_dc_2"], (g.colors[:, 2].numpy() - 0.5) / SH_C0, atol=1e-6)
    back = Gaussians.load_ply(path)
    for f in ("means", "scales", "quats", "opacities", "colors"):
        a, b = getattr(g, f), getattr(back, f)
        assert b.dtype == torch.float32
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-6), f


def test_ply_of_deformed_gaussians_keeps_covariances(tmp_path):
    g = random_gaussians(20, seed=1)
    F = torch.eye(3) + 0.3 * torch.randn(20, 3, 3, generator=torch.Generator().manual_seed(2))
    d = g.deform(g.means + 1.0, F)
    back = Gaussians.load_ply(d.save_ply(tmp_path / "d.ply"))
    assert torch.allclose(back.covariances(), d.covariances(), rtol=1e-4, atol=1e-7)


def test_load_ply_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        Gaussians.load_ply(tmp_path / "missing.ply")


def test_deform_identity_is_noop_and_rotation_rotates():
    g = random_gaussians(30)
    same = g.deform(g.means, torch.eye(3).expand(30, 3, 3))
    assert torch.allclose(same.covariances(), g.covariances(), atol=1e-7)
    assert torch.equal(same.means, g.means)
    R = rot_z(0.9)
    moved = g.deform(g.means * 2.0, R.expand(30, 3, 3))
    assert torch.allclose(moved.covariances(), R @ g.covariances() @ R.T, atol=1e-6)
    assert torch.allclose(moved.means, g.means * 2.0)
    # re-factoring the rotated covariance gives the same scales (sorted) and covariance
    f = moved.factorized()
    assert f.covs is None
    assert torch.allclose(f.scales.sort(-1).values, g.scales.sort(-1).values, atol=1e-5)
    assert torch.allclose(f.covariances(), moved.covariances(), atol=1e-6)


def test_deform_shape_errors():
    g = random_gaussians(5)
    with pytest.raises(ValueError, match="positions"):
        g.deform(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="F must be"):
        g.deform(g.means, torch.eye(3))


def test_container_helpers():
    g = random_gaussians(10)
    assert len(g) == 10
    sub = g.subset(torch.tensor([1, 3]))
    assert len(sub) == 2 and torch.equal(sub.means[1], g.means[3])
    assert len(g.subset(g.opacities > 2)) == 0
    both = Gaussians.cat([g, sub.deform(sub.means)])
    assert len(both) == 12 and both.covs is not None
    assert torch.allclose(both.covariances()[:10], g.covariances())
    pts = Gaussians.from_points(np.zeros((4, 3)), colors=(1.0, 0.0, 0.0), scale=0.02)
    assert pts.colors.shape == (4, 3) and float(pts.scales.max()) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="shape"):
        Gaussians(torch.zeros(3, 3), torch.ones(3, 3), torch.ones(2, 4), torch.ones(3),
                  torch.ones(3, 3))


def fibonacci_sphere(n: int, radius: float) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    return radius * torch.stack([torch.cos(theta) * torch.sin(phi), torch.cos(phi),
                                 torch.sin(theta) * torch.sin(phi)], -1).float()


def test_fill_particles_fills_a_sphere_shell():
    R = 0.3
    centre = torch.tensor([0.5, 0.5, 0.5])
    g = Gaussians.from_points(fibonacci_sphere(2000, R) + centre, scale=0.015, opacity=0.9)
    particles, volumes = fill_particles(g, grid_res=24, opacity_threshold=0.3)
    n = len(g)
    assert torch.equal(particles[:n], g.means)              # Gaussian centres come first
    r = (particles - centre).norm(dim=-1)
    assert float(r.max()) <= R + 0.05                         # nothing outside the sphere
    inner = r[n:]
    assert len(inner) > 1000 and float(inner.min()) < 0.05   # the interior got filled, core too
    # the volumes add up to the opaque ball's volume: the sphere plus the shell's thickness
    vol = float(volumes.sum())
    assert 0.9 * 4 / 3 * math.pi * R ** 3 < vol < 4 / 3 * math.pi * (R + 0.05) ** 3
    assert bool((volumes > 0).all())
    # the fill is uniform: fraction of fill particles inside r < R/2 ≈ (1/2)³
    frac = float((inner < R / 2).float().mean())
    assert 0.08 < frac < 0.2
    # each Gaussian follows its own particle
    assert torch.equal(particles_to_gaussians(particles, g), torch.arange(n))


def test_fill_particles_open_shell_has_no_interior():
    # a cap of a sphere is open: nothing is enclosed, only its (thick) shell gets particles
    pts = fibonacci_sphere(2000, 0.3)
    g = Gaussians.from_points(pts[pts[:, 1] > 0.05], scale=0.015)
    particles, volumes = fill_particles(g, grid_res=24)
    r = particles[len(g):].norm(dim=-1)
    assert len(r) > 0 and float(r.min()) > 0.24
    closed = Gaussians.from_points(pts, scale=0.015)
    assert float(fill_particles(closed, grid_res=24)[0].norm(dim=-1).min()) < 0.05


def test_fill_particles_jitter_and_errors():
    g = Gaussians.from_points(fibonacci_sphere(1500, 0.2), scale=0.015)
    a, _ = fill_particles(g, grid_res=16, generator=torch.Generator().manual_seed(0))
    b, _ = fill_particles(g, grid_res=16)
    assert a.shape == b.shape and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="spacing"):
        fill_particles(g, spacing=1e-5)
    bad = Gaussians.from_points(torch.tensor([[0.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        fill_particles(bad)
