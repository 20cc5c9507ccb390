"""Trainer variants in nnU-Net's layout: one folder per thing a variant changes (optimizer, training length)."""
