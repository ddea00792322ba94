"""learner stage."""
