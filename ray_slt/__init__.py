"""ray_slt: sign language translation, recognition and production at cluster scale, on Ray."""

__version__ = "0.1.0"
