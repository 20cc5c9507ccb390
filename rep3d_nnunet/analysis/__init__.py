"""Looking inside a model: effective receptive fields and learned Rep3D masks."""
from rep3d_nnunet.analysis.erf import (ERFResult, compute_erf, deepest_encoder_feature, deepest_feature, erf_of_model,
                                       erf_radii, erf_table, module_output, network_output, plot_erf, random_inputs)
from rep3d_nnunet.analysis.loading import TrainedModel, load_trained_model
from rep3d_nnunet.analysis.masks import (MaskInfo, mask_infos, mask_infos_from_state_dict, mask_table, masks_of_path,
                                         plot_masks)

__all__ = ["ERFResult", "MaskInfo", "TrainedModel", "compute_erf", "deepest_encoder_feature", "deepest_feature",
           "erf_of_model", "erf_radii", "erf_table", "load_trained_model", "mask_infos", "mask_infos_from_state_dict",
           "mask_table", "masks_of_path", "module_output", "network_output", "plot_erf", "plot_masks",
           "random_inputs"]
