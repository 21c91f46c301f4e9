"""Pieces shared by the trainer plugins: configs, engines, model loading, inputs."""
