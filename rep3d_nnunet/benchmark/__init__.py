"""Fair benchmark of Rep3D against nnU-Net, ResEnc, MedNeXt and other baselines inside nnU-Net v2.

``methods`` (registry) -> ``runner`` (plans, one preprocessing, one split, the method x
fold matrix) -> ``results`` (reading nnU-Net's outputs) -> ``fairness`` (the guard) ->
``stats`` (pure statistics) -> ``report`` (tables, plots); ``cli`` wires it to
``rep3d-nnunet benchmark``.
"""
