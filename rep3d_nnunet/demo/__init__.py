"""The demo: an embedded synthetic dataset and the plan -> train -> predict -> evaluate driver."""
