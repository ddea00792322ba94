"""Cluster launch for paper-scale runs: ``ray_cluster.yaml`` (AWS), the node setup scripts,
and ``physgm cluster check`` (offline validation with Ray's own validator plus a placement
check of every role of a run config) and ``physgm cluster costs`` (GPU-hours per stage).
See cluster/README.md for the runbook."""
