"""Variants that change the schedule only (epochs, iterations, batch cap): full-length, CPU demo and smoke tests."""
