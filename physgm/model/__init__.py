"""The PhysGM network: backbone, Plücker embedding, multi-view transformer, DPT Gaussian
head, physics head and its distribution, losses and checkpoints."""
from physgm.model.checkpoint import load_model, read_checkpoint, save_model
from physgm.model.distribution import PhysicsDistribution, distribution
from physgm.model.gaussian_head import PixelGaussians, pixels_to_gaussians
from physgm.model.losses import DEFAULT_LOSS_WEIGHTS, physgm_losses
from physgm.model.physgm_model import Encoded, PhysGM, PhysGMOutput
from physgm.model.physics_head import PhysicsHead, PhysicsHeadOutput

__all__ = ["DEFAULT_LOSS_WEIGHTS", "Encoded", "PhysGM", "PhysGMOutput", "PhysicsDistribution",
           "PhysicsHead", "PhysicsHeadOutput", "PixelGaussians", "distribution", "load_model",
           "physgm_losses", "pixels_to_gaussians", "read_checkpoint", "save_model"]
