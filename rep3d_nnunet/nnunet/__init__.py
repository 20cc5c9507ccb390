"""nnU-Net v2 glue: plans <-> network (architecture), planner, trainers, registration, plans templates."""
