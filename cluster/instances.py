"""EC2 instance types the checker knows: vCPUs, GPUs and RAM, as listed by AWS.

Ray's AWS provider fills a node type's CPU/GPU/memory from ``describe-instance-types``
(which needs credentials); offline, this table stands in for it so a node type that claims
more than its hardware, or a role that cannot fit, is caught before ``ray up``. Ray's
``memory`` resource is the RAM left after the object store (30 % by default).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

GIB = 1024 ** 3
OBJECT_STORE_FRACTION = 0.3  # ray.ray_constants.DEFAULT_OBJECT_STORE_MEMORY_PROPORTION


@dataclass(frozen=True)
class Instance:
    vcpus: int
    gpus: int
    ram_gib: float
    gpu_model: str = ""
    gpu_mem_gib: float = 0.0

    @property
    def ray_memory_bytes(self) -> int:
        """Ray's ``memory`` resource on this instance [bytes] (RAM minus the object store)."""
        return int(self.ram_gib * GIB * (1.0 - OBJECT_STORE_FRACTION))


INSTANCES: dict[str, Instance] = {
    # general purpose (head node)
    "m5.large": Instance(2, 0, 8),  # the type of Ray's own AWS defaults
    "m5.2xlarge": Instance(8, 0, 32),
    "m5.4xlarge": Instance(16, 0, 64),
    "m6i.2xlarge": Instance(8, 0, 32),
    "m6i.4xlarge": Instance(16, 0, 64),
    "m6i.8xlarge": Instance(32, 0, 128),
    "m7i.4xlarge": Instance(16, 0, 64),
    # single-GPU (simulation actors, reward replicas)
    "g5.xlarge": Instance(4, 1, 16, "A10G", 24),
    "g5.2xlarge": Instance(8, 1, 32, "A10G", 24),
    "g5.4xlarge": Instance(16, 1, 64, "A10G", 24),
    "g6.xlarge": Instance(4, 1, 16, "L4", 24),
    "g6.2xlarge": Instance(8, 1, 32, "L4", 24),
    "g6.4xlarge": Instance(16, 1, 64, "L4", 24),
    "g6e.xlarge": Instance(4, 1, 32, "L40S", 48),
    "g6e.2xlarge": Instance(8, 1, 64, "L40S", 48),
    "g6e.4xlarge": Instance(16, 1, 128, "L40S", 48),
    # multi-GPU (pretraining, learner)
    "g5.12xlarge": Instance(48, 4, 192, "A10G", 24),
    "g6.12xlarge": Instance(48, 4, 192, "L4", 24),
    "g6e.12xlarge": Instance(48, 4, 384, "L40S", 48),
    "g6e.48xlarge": Instance(192, 8, 1536, "L40S", 48),
    "p4d.24xlarge": Instance(96, 8, 1152, "A100", 40),
    "p4de.24xlarge": Instance(96, 8, 1152, "A100", 80),
    "p5.48xlarge": Instance(192, 8, 2048, "H100", 80),
}


def lookup(instance_type: Optional[str]) -> Optional[Instance]:
    return INSTANCES.get(instance_type or "")
