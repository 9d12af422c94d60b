"""Shared chassis: image IO, tf.data pipelines, the model registry, export, tiling, evaluation, the `llie` CLI."""
