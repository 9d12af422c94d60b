"""EnlightenGAN (Jiang et al., TIP 2021): unpaired attention U-Net GAN, in Keras 3."""
