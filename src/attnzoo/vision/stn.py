"""Spatial transformer (Jaderberg et al. 2015): predict an affine warp, resample the input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_choice, check_positive_int
from attnzoo.layers.conv import CONVS
from attnzoo.layers.vision_utils import LayerType, check_spatial_dims, create_act
from attnzoo.registry import VISION, Paper
from attnzoo.vision.base import VisionModule

__all__ = ["SpatialTransformer"]

JADERBERG_2015 = Paper(
    title="Spatial Transformer Networks",
    authors="Jaderberg, Simonyan, Zisserman, Kavukcuoglu",
    year=2015,
    url="https://arxiv.org/abs/1506.02025",
)


MAX_POOLS = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVG_POOLS = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
IDENTITY = {  # the identity warp per layout: (a, b) for sequences, theta for images and volumes
    1: torch.tensor([[1.0, 0.0]]),
    2: torch.eye(2, 3),
    3: torch.eye(3, 4),
}


@VISION.register("stn", paper=JADERBERG_2015, tags=("spatial",), complexity="O(HWC)")
class SpatialTransformer(VisionModule):
    r"""Spatial transformer: ``out = sample(x, affine_grid(theta(x)))``.

    Jaderberg, Simonyan, Zisserman, Kavukcuoglu, "Spatial Transformer Networks", NeurIPS 2015,
    https://arxiv.org/abs/1506.02025. Three parts (paper section 3):

    - localisation net ``theta = f_loc(x)`` ``(B, 2, 3)``: ``localization`` (two
      conv -> max-pool(2) -> ReLU stages, then ``AdaptiveAvgPool2d(pool_size)``) and the
      regressor ``fc_loc`` (``fc1``, ReLU, ``fc2`` to 6 numbers);
    - grid generator (eq. 1): source coordinates ``(x_s, y_s) = theta (x_t, y_t, 1)^T`` in
      normalised ``[-1, 1]`` coordinates (``F.affine_grid``);
    - sampler (eq. 5): bilinear interpolation with zero padding (``F.grid_sample``).

    ``fc2`` starts at weight 0 and bias ``[1, 0, 0, 0, 1, 0]`` (the identity warp, as the paper
    and the PyTorch tutorial do), so at initialisation the output equals the input **up to
    interpolation round-off** (about 1e-6 in float32: the grid points land on pixel centres
    only up to float error). Consequently, at initialisation the localisation convs and ``fc1``
    receive zero gradients (they sit behind the zero ``fc2.weight``); they train as soon as
    ``fc2.weight`` moves off zero after the first step.

    The defaults reproduce the localisation net of the PyTorch STN tutorial (conv 7x7 -> 8,
    conv 5x5 -> 10, ``Linear(90, 32)``, ``Linear(32, 6)``: 5,520 parameters for one input
    channel) but work for any ``channels`` and map size: the convs use "same" padding, the
    max-pools round up (``ceil_mode``), and an adaptive average pool fixes the regressor input
    at ``loc_channels[-1] * pool_size^2`` features, so maps down to 1x1 are accepted.
    ``loc_padding="valid"`` gives the tutorial's unpadded convs and floor pooling exactly (the
    adaptive pool is then the identity on 28x28 inputs; it needs ``H, W >= 18``).
    ``align_corners`` is passed explicitly to both ``affine_grid`` and ``grid_sample``.

    Formula:
        $$
        \begin{pmatrix} x^s_i \\ y^s_i \end{pmatrix} = A_\theta
        \begin{pmatrix} x^t_i \\ y^t_i \\ 1 \end{pmatrix}, \qquad
        A_\theta = f_{\mathrm{loc}}(X) \in \mathbb{R}^{2 \times 3}, \qquad
        Y_i = \mathrm{bilinear}(X; x^s_i, y^s_i)
        $$

        in normalised coordinates; $A_\theta$ starts at the identity warp.

    Args:
        channels: Input channels ``C``.
        loc_channels: Output channels of the two localisation convs (tutorial: 8, 10).
        loc_kernel_sizes: Odd kernel sizes of the two localisation convs (tutorial: 7, 5).
        loc_padding: ``"same"`` (default, any size) or ``"valid"`` (tutorial).
        pool_size: Side of the adaptive pool before the regressor (tutorial's 3x3 map).
        hidden: Hidden width of the regressor (tutorial: 32).
        act_layer: Activation of the localisation net.
        mode: Sampling mode of ``grid_sample`` (paper: ``"bilinear"``).
        padding_mode: Value outside the input (``"zeros"``, ``"border"``, ``"reflection"``).
        align_corners: ``align_corners`` of ``affine_grid`` and ``grid_sample``.
        spatial_dims: Spatial dims of the input: 1, 2 (the paper's images) or 3.

    Sequences and volumes (``spatial_dims=1`` or ``3``, an addition): the localisation net
    uses 1-D or 3-D convolutions and pools; a volume is warped by a ``(B, 3, 4)`` affine matrix
    (12 numbers, trilinear sampling, ``mode="bilinear"`` or ``"nearest"``), a sequence by
    ``x_s = a x_t + b`` (2 numbers, sampled as a one-row image). The regressor starts at the
    identity in every layout.

    Shape:
        - x: ``(B, C, H, W)`` -> same (the warped map is sampled on the input grid);
          ``(B, C, L)`` or ``(B, C, D, H, W)`` with ``spatial_dims=1`` or ``3``.

    Example:
        >>> stn = SpatialTransformer(1)
        >>> sum(p.numel() for p in stn.parameters())
        5520
        >>> x = torch.randn(2, 1, 9, 7)
        >>> torch.allclose(stn(x), x, atol=1e-5)
        True
    """

    spatial_dims = (1, 2, 3)  # each instance takes the one layout its spatial_dims= built

    def __init__(
        self,
        channels: int,
        *,
        loc_channels: tuple[int, int] = (8, 10),
        loc_kernel_sizes: tuple[int, int] = (7, 5),
        loc_padding: str = "same",
        pool_size: int = 3,
        hidden: int = 32,
        act_layer: LayerType = "relu",
        mode: str = "bilinear",
        padding_mode: str = "zeros",
        align_corners: bool = False,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__(channels)
        dims = check_spatial_dims(spatial_dims)
        self.spatial_dims = (dims,)  # this instance's layout
        loc_padding = check_choice("loc_padding", loc_padding, ("same", "valid"))
        self.mode = check_choice("mode", mode, ("bilinear", "nearest", "bicubic"))
        self.padding_mode = check_choice(
            "padding_mode", padding_mode, ("zeros", "border", "reflection")
        )
        if dims == 3 and self.mode == "bicubic":
            raise ValueError("mode='bicubic' samples images only; use 'bilinear' for volumes")
        self.align_corners = bool(align_corners)
        if len(tuple(loc_channels)) != 2 or len(tuple(loc_kernel_sizes)) != 2:
            raise ValueError(
                "loc_channels and loc_kernel_sizes must have 2 entries each, got "
                f"{loc_channels!r} and {loc_kernel_sizes!r}"
            )
        pool_size = check_positive_int("pool_size", pool_size)
        hidden = check_positive_int("hidden", hidden)

        self.localization = nn.Sequential()
        in_ch = channels
        for i, (out_ch, k) in enumerate(zip(loc_channels, loc_kernel_sizes, strict=True), 1):
            out_ch = check_positive_int(f"loc_channels[{i - 1}]", out_ch)
            k = check_positive_int(f"loc_kernel_sizes[{i - 1}]", k)
            if k % 2 == 0:
                raise ValueError(f"loc_kernel_sizes must be odd, got {tuple(loc_kernel_sizes)}")
            padding = k // 2 if loc_padding == "same" else 0
            self.localization.add_module(f"conv{i}", CONVS[dims](in_ch, out_ch, k, padding=padding))
            pool = MAX_POOLS[dims](2, ceil_mode=loc_padding == "same")
            self.localization.add_module(f"pool{i}", pool)
            self.localization.add_module(f"act{i}", create_act(act_layer))
            in_ch = out_ch
        self.localization.add_module("pool", AVG_POOLS[dims](pool_size))

        self.fc_loc = nn.Sequential()
        self.fc_loc.add_module("fc1", nn.Linear(in_ch * pool_size**dims, hidden))
        self.fc_loc.add_module("act", create_act(act_layer))
        self.fc_loc.add_module("fc2", nn.Linear(hidden, IDENTITY[dims].numel()))
        self.reset_transform()

    def reset_transform(self) -> None:
        """Set the regressor's last layer to predict the identity warp (weight 0)."""
        with torch.no_grad():
            self.fc_loc.fc2.weight.zero_()
            self.fc_loc.fc2.bias.copy_(IDENTITY[self.spatial_dims[0]].flatten())  # (2 | 6 | 12,)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted warps: ``(B, 2, 3)`` images, ``(B, 3, 4)`` volumes, ``(B, 1, 2)`` sequences."""
        features = self.localization(x).flatten(1)  # (B, loc_channels[-1] * pool_size^d)
        theta_shape = IDENTITY[self.spatial_dims[0]].shape  # (1, 2) | (2, 3) | (3, 4)
        return self.fc_loc(features).view(-1, *theta_shape)  # (B, *theta_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if x.shape[0] == 0:  # affine_grid refuses an empty batch: the warp of no image is none
            return x.clone()
        theta = self.transform(x)
        sequence = x.dim() == 3
        if sequence:  # x_s = a x_t + b, sampled as a one-row image
            scale, shift = theta[:, 0, :1], theta[:, 0, 1:]  # (B, 1) each
            zeros, ones = torch.zeros_like(scale), torch.ones_like(scale)
            rows = [torch.cat([scale, zeros, shift], 1), torch.cat([zeros, ones, zeros], 1)]
            theta, x = torch.stack(rows, dim=1), x.unsqueeze(2)  # (B, 2, 3), (B, C, 1, L)
        grid = F.affine_grid(theta, list(x.shape), align_corners=self.align_corners)
        out = F.grid_sample(
            x,
            grid,
            mode=self.mode,
            padding_mode=self.padding_mode,
            align_corners=self.align_corners,
        )
        return out.squeeze(2) if sequence else out
