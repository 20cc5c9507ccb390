"""rep3d-nnunet: Rep3D large-kernel re-parameterisation as an nnU-Net v2 plugin."""
from rep3d_nnunet.blocks import LayerNorm3d, Rep3DBlock, UXNetBlock
from rep3d_nnunet.conv import CSLADWConv3d, DepthwiseConv3d, ReparamDWConv3d
from rep3d_nnunet.deploy import Reparameterizable, reparameterize_model
from rep3d_nnunet.encoder import Rep3DEncoder
from rep3d_nnunet.mask import MASK_MODES, KernelMask, LRBMGenerator
from rep3d_nnunet.ops import dwconv3d
from rep3d_nnunet.prior import distance_prior, kernel_size_3d

__version__ = "0.1.0"
__all__ = [
    "CSLADWConv3d", "DepthwiseConv3d", "KernelMask", "LRBMGenerator", "LayerNorm3d", "MASK_MODES",
    "Rep3DBlock", "Rep3DEncoder", "ReparamDWConv3d", "Reparameterizable", "UXNetBlock", "distance_prior",
    "dwconv3d", "kernel_size_3d", "reparameterize_model",
]
