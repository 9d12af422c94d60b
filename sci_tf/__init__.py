"""SCI (Ma et al., CVPR 2022): self-calibrated illumination learning, in Keras 3."""
