"""Training: the crop dataset, batched augmentation on the device, the training loop, checkpoints."""
