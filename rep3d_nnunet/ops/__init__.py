"""Large-kernel operators (one home: the depthwise 3D convolution)."""
from rep3d_nnunet.ops.dwconv import dwconv3d

__all__ = ["dwconv3d"]
