"""Ray Serve endpoint and demo page for the trained model (see serving/README.md).

``serving.deploy.start(cfg, source)`` deploys; ``physgm serve`` is the command line. The
pure parts (``inputs``, ``scene``, ``model_source``, ``security``) import no Ray."""
