"""The PhysGM network: backbone, Plücker embedding, multi-view transformer, DPT Gaussian
head, physics head and its distribution, losses and checkpoints."""
from physgm.model.distribution import PhysicsDistribution
from physgm.model.gaussian_head import PixelGaussians, pixels_to_gaussians
from physgm.model.physgm_model import Encoded, PhysGM, PhysGMOutput
from physgm.model.physics_head import PhysicsHead, PhysicsHeadOutput

__all__ = ["Encoded", "PhysGM", "PhysGMOutput", "PhysicsDistribution", "PhysicsHead",
           "PhysicsHeadOutput", "PixelGaussians", "pixels_to_gaussians"]
