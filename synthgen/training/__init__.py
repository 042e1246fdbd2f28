"""The shared GAN training loop and its callbacks."""
