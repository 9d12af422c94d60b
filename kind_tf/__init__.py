"""KinD (Zhang et al., ACM MM 2019): Retinex decomposition, restoration and illumination adjustment, in Keras 3."""
