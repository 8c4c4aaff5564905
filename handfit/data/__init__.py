"""Dataset readers, the synthetic dataset, TFDS builders and the input pipeline."""
