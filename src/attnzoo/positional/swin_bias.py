"""Swin Transformer's 2-D relative position bias table (Liu et al. 2021), resizable."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnzoo._checks import check_positive_int, type_name
from attnzoo.registry import POSITIONAL, Paper

__all__ = ["SwinRelativeBias", "window_relative_index"]

LIU_2021 = Paper(
    title="Swin Transformer: Hierarchical Vision Transformer using Shifted Windows",
    authors="Liu, Lin, Cao, Hu, Wei, Zhang, Lin, Guo",
    year=2021,
    url="https://arxiv.org/abs/2103.14030",
)


def _window(value: object, name: str = "window_size") -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, tuple | list) and len(value) == 2):
        raise TypeError(f"{name} must be an int or a pair (Wh, Ww), got {type_name(value)}")
    return tuple(check_positive_int(name, v) for v in value)  # type: ignore[return-value]


def window_relative_index(win_h: int, win_w: int, device=None) -> torch.Tensor:
    """``(M, M)`` index into the ``(2 Wh - 1) (2 Ww - 1)`` table, ``M = Wh Ww`` (row-major).

    Token ``i`` at ``(y_i, x_i)`` and token ``j`` at ``(y_j, x_j)`` read entry
    ``(y_i - y_j + Wh - 1) (2 Ww - 1) + (x_i - x_j + Ww - 1)``.

    Example:
        >>> window_relative_index(1, 2)
        tensor([[1, 0],
                [2, 1]])
    """
    ys, xs = torch.meshgrid(
        torch.arange(win_h, device=device), torch.arange(win_w, device=device), indexing="ij"
    )
    ys, xs = ys.flatten(), xs.flatten()  # (M,) each
    dy = ys[:, None] - ys[None, :] + win_h - 1  # (M, M) in [0, 2 Wh - 2]
    dx = xs[:, None] - xs[None, :] + win_w - 1  # (M, M) in [0, 2 Ww - 2]
    return dy * (2 * win_w - 1) + dx


@POSITIONAL.register(
    "swin_bias",
    paper=LIU_2021,
    tags=("relative", "2d", "learned", "score_bias", "window"),
    complexity="O(M^2) for a window of M tokens",
)
class SwinRelativeBias(nn.Module):
    r"""Learned 2-D relative position bias of Swin's window attention, one value per offset.

    Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", 2021,
    https://arxiv.org/abs/2103.14030, eq. 4: ``Attention = softmax(Q K^T / sqrt(d) + B) V``
    where ``B`` is read from a table ``B^ (2 Wh - 1) x (2 Ww - 1)`` per head by the relative
    offset ``(dy, dx)`` of the two tokens of a ``Wh x Ww`` window. The table is stored as
    timm and the official code store it (``relative_position_bias_table`` of shape
    ``((2 Wh - 1)(2 Ww - 1), nh)``, truncated-normal initialisation with std 0.02), so their
    state dicts load. :meth:`resize` moves the table to another window by bicubic
    interpolation of the ``(2 Wh - 1) x (2 Ww - 1)`` grid, as the official code does when it
    fine-tunes a window-7 checkpoint at window 12; loading the state dict of another square
    window resizes it the same way.

    Formula:
        $$
        \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}} + B\right)
        V,
        \qquad B_{h,\, ij} = \hat B_h[\Delta y_{ij} + W_h - 1,\; \Delta x_{ij} + W_w - 1]
        $$

        with $\hat B_h \in \mathbb{R}^{(2W_h - 1) \times (2W_w - 1)}$ learned per head and
        $(\Delta y, \Delta x)$ the offset of the two tokens in the window.

    Args:
        num_heads: Heads (one table each).
        window_size: ``Wh = Ww`` as an int, or ``(Wh, Ww)``; default 7 (the paper's).

    Shape:
        - forward(): ``(1, nh, M, M)`` bias, ``M = Wh Ww`` (add it to the window's scores)

    Example:
        >>> bias = SwinRelativeBias(num_heads=3, window_size=4)
        >>> bias().shape, bias.relative_position_bias_table.shape
        (torch.Size([1, 3, 16, 16]), torch.Size([49, 3]))
        >>> bias.resize(6)
        >>> bias().shape
        torch.Size([1, 3, 36, 36])
    """

    def __init__(self, num_heads: int, *, window_size: int | tuple[int, int] = 7) -> None:
        super().__init__()
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.window_size = _window(window_size)
        win_h, win_w = self.window_size
        table = torch.empty((2 * win_h - 1) * (2 * win_w - 1), self.num_heads)
        self.relative_position_bias_table = nn.Parameter(nn.init.trunc_normal_(table, std=0.02))
        self.register_buffer(
            "relative_position_index", window_relative_index(win_h, win_w), persistent=False
        )

    def forward(self) -> torch.Tensor:
        area = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(area, area, self.num_heads)  # (M, M, nh)
        return bias.permute(2, 0, 1).unsqueeze(0)  # (1, nh, M, M)

    @torch.no_grad()
    def resize(self, window_size: int | tuple[int, int]) -> None:
        """Move the table to a new window: bicubic interpolation of each head's offset grid."""
        new = _window(window_size)
        if new == self.window_size:
            return
        (old_h, old_w), (new_h, new_w) = self.window_size, new
        grid = self.relative_position_bias_table.T.reshape(
            1, self.num_heads, 2 * old_h - 1, 2 * old_w - 1
        )  # (1, nh, 2 Wh - 1, 2 Ww - 1)
        grid = F.interpolate(
            grid.float(), size=(2 * new_h - 1, 2 * new_w - 1), mode="bicubic", align_corners=False
        ).to(grid.dtype)  # (1, nh, 2 Wh' - 1, 2 Ww' - 1)
        table = grid.reshape(self.num_heads, -1).T.contiguous()  # ((2Wh'-1)(2Ww'-1), nh)
        self.relative_position_bias_table = nn.Parameter(
            table, requires_grad=self.relative_position_bias_table.requires_grad
        )
        index = window_relative_index(new_h, new_w, device=table.device)
        self.register_buffer("relative_position_index", index, persistent=False)
        self.window_size = new

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A table of another square window (a checkpoint) is resized to this window."""
        key = prefix + "relative_position_bias_table"
        table = state_dict.get(key)
        current = self.relative_position_bias_table.shape
        if isinstance(table, torch.Tensor) and table.dim() == 2 and table.shape != current:
            side = round((table.shape[0] ** 0.5 + 1) / 2)  # a square source window
            if (2 * side - 1) ** 2 == table.shape[0] and table.shape[1] == self.num_heads:
                target = self.window_size
                self.window_size = (side, side)
                self.relative_position_bias_table = nn.Parameter(table.clone())
                self.resize(target)
                state_dict = {**state_dict, key: self.relative_position_bias_table.data}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, window_size={self.window_size}"
