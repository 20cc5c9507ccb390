"""Re-export of nnU-Net's path checks, which live in ``rep3d_nnunet.nnunet.adapter`` (kept for old imports)."""
from rep3d_nnunet.nnunet.adapter import (NnUNetEnvironmentError, check_nnunet_environment,  # noqa: F401
                                         preprocessed_dataset_folder)

__all__ = ["NnUNetEnvironmentError", "check_nnunet_environment", "preprocessed_dataset_folder"]
