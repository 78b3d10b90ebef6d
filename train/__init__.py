"""Training and evaluation: the train/evaluate CLIs, losses, paired augmentation."""
