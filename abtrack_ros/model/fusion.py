"""Inference-only rewrites shared by the fused head and the fused stem: batch norm folded into
the convolution before it, and the convolution call that is fastest on this CPU at batch 1."""
from __future__ import annotations

import torch
from torch import nn

# oneDNN convolution callable directly (CPU builds with MKL-DNN).
ONEDNN_CONV = torch.backends.mkldnn.is_available() and hasattr(torch, "mkldnn_convolution")
ONEDNN_DTYPES = (torch.float32, torch.bfloat16)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` in eval mode (running statistics folded in).

    Pure: ``conv`` and ``bn`` are left as they are. Folded in float64, then cast back, so the
    fold adds no rounding beyond the target dtype's.
    """
    if bn.training:
        raise ValueError("batch norm is folded with its running statistics: eval mode (inference) only")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("batch norm without running statistics cannot be folded")
    dtype = conv.weight.dtype
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        shift = -bn.running_mean.double() * scale
        if bn.affine:
            scale, shift = scale * bn.weight.double(), shift * bn.weight.double() + bn.bias.double()
        bias = shift if conv.bias is None else shift + conv.bias.double() * scale
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                          device=conv.weight.device, dtype=dtype)
        fused.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype))
        fused.bias.copy_(bias.to(dtype))
    return fused.requires_grad_(False)


def conv2d_fast(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, on the CPU through oneDNN: at batch 1 on a small map PyTorch's heuristic picks
    its im2col path for an ungrouped 3x3 convolution, 1.5x slower here (docs/speed.md). Traced
    exports (ONNX) take the plain call."""
    if (ONEDNN_CONV and x.device.type == "cpu" and x.dtype in ONEDNN_DTYPES and layer.padding_mode == "zeros"
            and not torch.jit.is_tracing()):
        return torch.mkldnn_convolution(x, layer.weight, layer.bias, layer.padding, layer.stride, layer.dilation,
                                        layer.groups)
    return layer(x)
