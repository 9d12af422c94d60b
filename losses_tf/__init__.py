"""Losses and metrics of low-light image enhancement, as Keras objects and plain functions (NHWC float32)."""
