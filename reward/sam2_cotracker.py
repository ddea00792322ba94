"""Learned backend: SAM-2 video masks + CoTracker3 (offline) point tracks.

SAM-2 segments the object through a whole video, prompted in frame 0 by the box of the
first-frame foreground (background difference) or by a given alpha mask. CoTracker3 tracks
the query points (placed on the reference object in frame 0) through the video.

Weights come from local files named in the config (``sam2_checkpoint``,
``cotracker_checkpoint``); ``random_init: true`` builds both models with random weights
(seeded, so every replica builds the same model) for tests and smoke runs.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from physgm.config import RewardConfig

from .frames import foreground

SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/{name}"
SAM2_CHECKPOINTS = {"t": "sam2.1_hiera_tiny.pt", "s": "sam2.1_hiera_small.pt",
                    "b+": "sam2.1_hiera_base_plus.pt", "l": "sam2.1_hiera_large.pt"}
COTRACKER_URL = "https://huggingface.co/facebook/cotracker3/resolve/main/scaled_offline.pth"
_IMG_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_IMG_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
_SUPPORT_GRID = 6  # extra context points CoTracker tracks jointly (dropped from the output)


def _sam2_checkpoint_name(sam2_config: str) -> str:
    variant = Path(sam2_config).stem.rsplit("_", 1)[-1]
    return SAM2_CHECKPOINTS.get(variant, SAM2_CHECKPOINTS["t"])


def resolve_checkpoint(path: str | None, what: str, url: str, key: str) -> str:
    """Return ``path`` if it is a file, else raise FileNotFoundError saying what to fetch."""
    if path is not None and Path(path).is_file():
        return path
    where = f"'{path}' does not exist" if path else f"reward.{key} is not set"
    raise FileNotFoundError(
        f"{what} checkpoint missing: {where}. Download it from {url} , then set "
        f"reward.{key}=<path to the file> (or reward.random_init=true for an untrained smoke "
        "test). See reward/README.md.")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("reward.device=cuda but no CUDA GPU is visible: use reward.device=cpu")
    return torch.device(name)


def build_sam2(cfg: RewardConfig, device: torch.device):
    """SAM-2 video predictor at ``cfg.sam2_image_size`` (random weights if random_init)."""
    from sam2.build_sam import build_sam2_video_predictor

    ckpt = None
    if not cfg.random_init:
        name = _sam2_checkpoint_name(cfg.sam2_config)
        ckpt = resolve_checkpoint(cfg.sam2_checkpoint, f"SAM-2.1 ({name})",
                                  SAM2_URL.format(name=name), "sam2_checkpoint")
    overrides = [
        f"++model.image_size={cfg.sam2_image_size}",
        # the post-processing the SAM-2 release applies, minus hole filling when its CUDA
        # extension is absent (it would only warn and skip)
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
        "++model.binarize_mask_from_pts_for_mem_enc=true",
    ]
    try:
        import sam2._C  # noqa: F401
        overrides.append("++model.fill_hole_area=8")
    except ImportError:
        pass
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_sam2_video_predictor(cfg.sam2_config, ckpt_path=ckpt, device=str(device),
                                          hydra_overrides_extra=overrides,
                                          apply_postprocessing=False)


def build_cotracker(cfg: RewardConfig, device: torch.device):
    """CoTracker3 offline model at ``cfg.cotracker_resolution`` (random if random_init)."""
    from cotracker.models.core.cotracker.cotracker3_offline import CoTrackerThreeOffline

    h, w = cfg.cotracker_resolution
    if h % 4 or w % 4 or h < 32 or w < 32:
        raise ValueError(f"reward.cotracker_resolution must be multiples of 4, ≥ 32, got "
                         f"{(h, w)} (the released model uses [384, 512])")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CoTrackerThreeOffline(stride=4, corr_radius=3, window_len=60,
                                      model_resolution=(h, w))
    if not cfg.random_init:
        path = resolve_checkpoint(cfg.cotracker_checkpoint, "CoTracker3 (scaled_offline.pth)",
                                  COTRACKER_URL, "cotracker_checkpoint")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state))
    return model.to(device).eval()


class Sam2CotrackerBackend:
    """SAM-2 masks and CoTracker3 tracks; same interface as ``ClassicalBackend``."""

    name = "sam2_cotracker"

    def __init__(self, cfg: RewardConfig):
        self.cfg = cfg
        self.device = _device(cfg.device)
        self.sam2 = build_sam2(cfg, self.device)
        self.cotracker = build_cotracker(cfg, self.device)

    # ---- SAM-2 ---------------------------------------------------------------------------
    def _init_state(self, video: np.ndarray) -> dict:
        """The predictor's inference state for an in-memory video (its own ``init_state``
        only reads JPEG folders or mp4 files). Frames resized to image_size², normalised."""
        size = self.sam2.image_size
        frames = torch.from_numpy(video).permute(0, 3, 1, 2).float().div_(255.0)
        frames = F.interpolate(frames, (size, size), mode="bilinear", align_corners=False,
                               antialias=True)
        images = ((frames - _IMG_MEAN) / _IMG_STD).to(self.device)
        state = {
            "images": images, "num_frames": len(images),
            "offload_video_to_cpu": False, "offload_state_to_cpu": False,
            "video_height": video.shape[1], "video_width": video.shape[2],
            "device": self.device, "storage_device": self.device,
            "point_inputs_per_obj": {}, "mask_inputs_per_obj": {}, "cached_features": {},
            "constants": {}, "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(),
            "obj_ids": [], "output_dict_per_obj": {}, "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        self.sam2._get_image_feature(state, frame_idx=0, batch_size=1)
        return state

    @torch.inference_mode()
    def masks(self, video: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
        """``(T, H, W, 3) uint8`` → SAM-2 masks ``(T, H, W)`` bool.

        Prompt in frame 0: the given alpha's first frame as a mask prompt, else the box of the
        first-frame background-difference foreground. No foreground in frame 0 → all empty.
        """
        t_len, h, w = video.shape[:3]
        out = np.zeros((t_len, h, w), bool)
        first = alpha[0] if alpha is not None else foreground(
            video[:1], self.cfg.background, self.cfg.fg_threshold)[0]
        if t_len == 0 or not first.any():
            return out
        state = self._init_state(video)
        if alpha is not None:
            self.sam2.add_new_mask(state, frame_idx=0, obj_id=1, mask=torch.from_numpy(first))
        else:
            ys, xs = np.nonzero(first)
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
            self.sam2.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=box)
        for frame_idx, _, logits in self.sam2.propagate_in_video(state):
            out[frame_idx] = (logits[0, 0] > 0.0).cpu().numpy()
        return out

    # ---- CoTracker3 ----------------------------------------------------------------------
    @torch.inference_mode()
    def tracks(self, video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track ``queries (N, 2)`` (x, y px in frame 0) through ``video (T, H, W, 3)``.

        Returns tracks ``(T, N, 2)`` float32 px and visibility ``(T, N)`` bool (probability
        > ``cfg.visibility_threshold``; frame 0 is the query itself, visible).
        """
        from cotracker.models.core.model_utils import get_points_on_a_grid

        t_len, h, w = video.shape[:3]
        n = len(queries)
        if t_len == 0:
            return np.zeros((0, n, 2), np.float32), np.zeros((0, n), bool)
        rh, rw = self.cfg.cotracker_resolution
        frames = torch.from_numpy(video).permute(0, 3, 1, 2).float()
        frames = F.interpolate(frames, (rh, rw), mode="bilinear", align_corners=True)
        to_model = torch.tensor([(rw - 1) / (w - 1), (rh - 1) / (h - 1)])
        q = torch.from_numpy(queries.astype(np.float32)) * to_model
        support = get_points_on_a_grid(_SUPPORT_GRID, (rh, rw), device="cpu")[0]
        q = torch.cat([q, support], dim=0)
        q = torch.cat([torch.zeros(len(q), 1), q], dim=1)  # (N + S, 3): (t=0, x, y)
        if t_len == 1:
            coords, vis = q[None, :, 1:], torch.ones(1, len(q))
        else:
            coords, vis, _, _ = self.cotracker(frames[None].to(self.device), q[None].to(self.device),
                                               iters=self.cfg.cotracker_iters)
            coords, vis = coords[0].cpu(), vis[0].cpu()
        coords, vis = coords[:, :n], vis[:, :n] > self.cfg.visibility_threshold
        coords[0], vis[0] = q[:n, 1:], True
        tracks = (coords / to_model).numpy().astype(np.float32)
        return tracks, vis.numpy()
