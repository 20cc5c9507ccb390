"""nnU-Net v2 glue: plans <-> network (architecture), training vs deploy form (forms), planner,
trainers (one written class per ``-tr`` name), baselines, registration, plans templates, adapter."""
