"""Variants that change the optimiser recipe only."""
