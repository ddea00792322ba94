"""The floor under the stages (docs/architecture.md): services every stage shares.

- ``ray_cluster``: the one Ray bootstrap (``ensure_ray``) and the roles' CPU demand
- ``tracking``: the one MLflow layer (store, experiment, runs, params, metrics, artifacts)
- ``distributed``: torch.distributed/DeepSpeed helpers, free ports, RNG capture
- ``messages``: what crosses the object store in the DPO loop (Task, Pair, RolloutResult)
- ``scenes``: scenes to re-simulate (RolloutScene), their MPM settings, splits and the
  frozen encoder's token cache

It imports ``physgm`` and libraries only, never a stage.
"""
