"""The Vision Transformer (Dosovitskiy et al. 2021) with any registered attention mechanism."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attnzoo._checks import check_choice, check_finite, check_positive_int, check_probability
from attnzoo.layers.dropout import Dropout
from attnzoo.layers.helpers import to_2tuple
from attnzoo.layers.patch_embed import PatchEmbed
from attnzoo.models._blocks import EncoderLayer
from attnzoo.models._state import CheckedLoadMixin
from attnzoo.models.vit_weights import from_timm_state_dict, is_timm_state_dict, resample_pos_embed
from attnzoo.papers import DOSOVITSKIY_2021
from attnzoo.positional.sincos_2d import SinCos2d
from attnzoo.registry import MODELS, Paper

__all__ = [
    "TOUVRON_2021",
    "VisionTransformer",
    "vit_base_patch16_224",
    "vit_large_patch16_224",
    "vit_small_patch16_224",
    "vit_tiny_patch16_224",
]

TOUVRON_2021 = Paper(
    title="Training data-efficient image transformers & distillation through attention",
    authors="Touvron, Cord, Douze, Massa, Sablayrolles, Jegou",
    year=2021,
    url="https://arxiv.org/abs/2012.12877",
)

GLOBAL_POOLS = ("token", "avg")
POS_EMBEDS = ("learned", "sincos_2d")


class VisionTransformer(CheckedLoadMixin, nn.Module):
    r"""ViT: patch tokens + class token + positions -> pre-LN Transformer encoder -> MLP head.

    Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
    Scale", 2021, https://arxiv.org/abs/2010.11929, eqs. 1-4: ``z0 = [x_class; x_p E] + E_pos``,
    ``z' = z + MSA(LN(z))``, ``z = z' + MLP(LN(z'))`` (GELU), ``y = head(LN(z_L^0))``. The layout
    and the names are timm's (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
    ``blocks.{i}.attn``, ``norm``, ``head``), so timm state dicts load through a key map
    (:mod:`attnzoo.models.vit_weights`; ``load_state_dict`` applies it automatically) and give
    the same outputs. ``attention`` replaces the multi-head self-attention of every block by any
    registered mechanism (fixed-length ones get ``seq_len`` = the token count).

    ``global_pool="avg"`` averages the patch tokens and, as timm, moves the final LayerNorm after
    the pooling (``fc_norm``). ``pos_embed="sincos_2d"`` replaces the learned table by the fixed
    2-D sine-cosine table of :class:`~attnzoo.positional.SinCos2d` (unnormalised positions, the
    MoCo v3 / MAE choice), zero for the class token. Another image size needs
    :meth:`resize_pos_embed` (bicubic resampling of the learned table, section 3.2), which
    ``load_state_dict`` also applies to a checkpoint trained on another grid. Initialisation:
    timm's (normal, std 0.02, for linears and the position table; 1e-6 for the class token).

    Formula:
        $$
        \begin{aligned}
        z_0 &= [x_{\mathrm{class}};\, x_p^1 E;\, \dots;\, x_p^N E] + E_{\mathrm{pos}}, \qquad
        E \in \mathbb{R}^{(P^2 C) \times D} \\
        z'_l &= \mathrm{MSA}(\mathrm{LN}(z_{l-1})) + z_{l-1}, \qquad
        z_l = \mathrm{MLP}(\mathrm{LN}(z'_l)) + z'_l \\
        y &= \mathrm{head}(\mathrm{LN}(z_L^0))
        \end{aligned}
        $$

    Args:
        img_size: Input size (int or ``(H, W)``), divisible by ``patch_size``.
        patch_size: Patch size ``P``.
        in_chans: Image channels.
        num_classes: Classes of the head; 0 returns the pooled features.
        embed_dim: Width ``D``.
        depth: Encoder blocks ``L``.
        num_heads: Heads.
        mlp_ratio: MLP width / ``D`` (4).
        class_token: Prepend the learned class token.
        global_pool: ``"token"`` (class token) or ``"avg"`` (mean of the patch tokens).
        pos_embed: ``"learned"`` or ``"sincos_2d"``.
        drop_rate: Dropout on the pooled features before the head and inside the blocks.
        pos_drop_rate: Dropout after adding the positions.
        attn_drop_rate: Dropout on attention weights.
        drop_path_rate: Stochastic depth, linearly increasing to this rate over the blocks.
        norm_eps: LayerNorm epsilon (1e-6 as the paper's code and timm).
        attention: Mechanism of every block (registry name, default ``"mha"``).
        attention_kwargs: Its constructor options.

    Shape:
        - images: ``(B, in_chans, H, W)`` -> ``(B, num_classes)`` (``(B, D)`` with 0 classes)

    Example:
        >>> vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2,
        ...                         num_heads=4, num_classes=10)
        >>> vit(torch.randn(2, 3, 32, 32)).shape, vit.pos_embed.shape
        (torch.Size([2, 10]), torch.Size([1, 17, 64]))
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        class_token: bool = True,
        global_pool: str = "token",
        pos_embed: str = "learned",
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        attention: str = "mha",
        attention_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.global_pool = check_choice("global_pool", global_pool, GLOBAL_POOLS)
        self.pos_embed_kind = check_choice("pos_embed", pos_embed, POS_EMBEDS)
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True; use global_pool='avg'")
        self.num_classes = check_positive_int("num_classes", num_classes, minimum=0)
        self.embed_dim = check_positive_int("embed_dim", embed_dim)
        check_positive_int("depth", depth)
        mlp_ratio = check_finite("mlp_ratio", mlp_ratio, positive=True)
        check_probability("drop_path_rate", drop_path_rate)
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.num_prefix_tokens = 1 if class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        tokens = self.num_prefix_tokens + self.patch_embed.num_patches
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, embed_dim))  # (1, N + 1, D)
        else:
            self.register_buffer("pos_embed", self._sincos_table(), persistent=False)
        self.pos_drop = Dropout(check_probability("pos_drop_rate", pos_drop_rate))
        # stochastic depth grows linearly with depth (DeiT, timm)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            EncoderLayer(
                embed_dim,
                num_heads=num_heads,
                ffn_dim=int(embed_dim * mlp_ratio),
                dropout=drop_rate,
                attn_dropout=attn_drop_rate,
                activation="gelu",
                norm_first=True,
                norm_eps=norm_eps,
                drop_path=rate,
                attention=attention,
                attention_kwargs=attention_kwargs,
                seq_len=tokens,
            )
            for rate in rates
        )
        use_fc_norm = global_pool == "avg"
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(embed_dim, eps=norm_eps)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps) if use_fc_norm else nn.Identity()
        self.head_drop = Dropout(check_probability("drop_rate", drop_rate))
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # timm's trunc_normal_(std=0.02) has bounds +-2 (absolute) that never bind at std 0.02:
        # the same distribution as normal_, which is much faster on CPU
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        linears = [self.head] + [
            module
            for block in self.blocks
            for module in (block.mlp.fc1, block.mlp.fc2, *_projections(block.attn))
        ]
        for linear in linears:
            if isinstance(linear, nn.Linear):
                nn.init.normal_(linear.weight, std=0.02)
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)

    def _sincos_table(self) -> torch.Tensor:
        grid = torch.ones(1, *self.patch_embed.grid_size, dtype=torch.bool)
        table = SinCos2d(self.embed_dim, normalize=False).encoding(grid)  # (1, D, gh, gw)
        table = table.flatten(2).transpose(1, 2)  # (1, N, D)
        prefix = table.new_zeros(1, self.num_prefix_tokens, self.embed_dim)  # (1, 1, D)
        return torch.cat([prefix, table], dim=1)  # (1, 1 + N, D)

    @property
    def grid_size(self) -> tuple[int, int]:
        """The patch grid ``(gh, gw)``."""
        return self.patch_embed.grid_size

    def resize_pos_embed(self, new_size: int | tuple[int, int]) -> None:
        """Accept images of ``new_size`` from now on: resample (or recompute) the positions.

        Raises:
            ValueError: ``new_size`` is not divisible by the patch size, or a fixed-length
                mechanism was built for fewer tokens than the new grid has.
        """
        old_grid = self.patch_embed.grid_size
        old_size = self.patch_embed.img_size
        self.patch_embed.set_img_size(new_size)
        tokens = self.num_prefix_tokens + self.patch_embed.num_patches
        limit = min(
            (getattr(b.attn, "seq_len", None) or tokens for b in self.blocks), default=tokens
        )
        if tokens > limit:
            self.patch_embed.set_img_size(old_size)
            raise ValueError(
                f"img_size {to_2tuple(new_size)} gives {tokens} tokens, but the fixed-length "
                f"attention was built with seq_len={limit}; rebuild the model with this img_size"
            )
        if isinstance(self.pos_embed, nn.Parameter):
            with torch.no_grad():
                table = resample_pos_embed(
                    self.pos_embed.data,
                    self.patch_embed.grid_size,
                    num_prefix_tokens=self.num_prefix_tokens,
                    old_grid=old_grid,
                )
            self.pos_embed = nn.Parameter(table)
        else:
            self.pos_embed = self._sincos_table().to(self.pos_embed.device)

    def adapt_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """Convert timm keys; resample learned positions saved for another grid to this one."""
        if is_timm_state_dict(state_dict):
            state_dict = from_timm_state_dict(state_dict)
        table = state_dict.get("pos_embed")
        if (
            isinstance(self.pos_embed, nn.Parameter)
            and isinstance(table, torch.Tensor)
            and table.dim() == 3
            and table.shape[-1] == self.embed_dim
            and table.shape[1] != self.pos_embed.shape[1]
        ):
            state_dict["pos_embed"] = resample_pos_embed(
                table, self.patch_embed.grid_size, num_prefix_tokens=self.num_prefix_tokens
            )
        return state_dict

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens after the encoder and final norm: ``(B, prefix + N, D)``."""
        x = self.patch_embed(images)  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        x = self.pos_drop(x + self.pos_embed.to(x.dtype))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Pool the tokens, then (unless ``pre_logits``) apply the head."""
        x = x[:, self.num_prefix_tokens :].mean(dim=1) if self.global_pool == "avg" else x[:, 0]
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))

    def extra_repr(self) -> str:
        return f"global_pool={self.global_pool!r}, pos_embed={self.pos_embed_kind!r}"


def _projections(attn: nn.Module) -> list[nn.Module]:
    return [
        getattr(attn, name)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj")
        if hasattr(attn, name)
    ]


_CONFIGS = {
    # name: (embed_dim, depth, heads, paper, parameter count with 1000 classes)
    "vit_tiny_patch16_224": (192, 12, 3, TOUVRON_2021, "5,717,416"),
    "vit_small_patch16_224": (384, 12, 6, TOUVRON_2021, "22,050,664"),
    "vit_base_patch16_224": (768, 12, 12, DOSOVITSKIY_2021, "86,567,656"),
    "vit_large_patch16_224": (1024, 24, 16, DOSOVITSKIY_2021, "304,326,632"),
}


def _factory(name: str):
    dim, depth, heads, paper, params = _CONFIGS[name]
    size = name.split("_")[1]

    def factory(**kwargs: Any) -> VisionTransformer:
        options = {"embed_dim": dim, "depth": depth, "num_heads": heads, "patch_size": 16, **kwargs}
        return VisionTransformer(**options)

    factory.__name__ = factory.__qualname__ = name
    source = (
        "Dosovitskiy et al. 2021, Table 1"
        if paper is DOSOVITSKIY_2021
        else ("Touvron et al. 2021 (DeiT), Table 1; the ViT paper's architecture")
    )
    letter = size[0].upper()
    factory.__doc__ = f"""ViT-{letter}/16 (224 px): width {dim}, {depth} blocks, {heads} heads.

    MLP width {4 * dim}. Configuration of {source} ({paper.url}); {params} parameters with
    1000 classes, equal to timm's ``{name}``. Any :class:`VisionTransformer` option can be
    overridden (``img_size=``, ``patch_size=``, ``num_classes=``, ``global_pool=``, ``pos_embed=``,
    ``attention=``, ``attention_kwargs=`` ...).

    Args:
        **kwargs: :class:`VisionTransformer` options.

    Shape:
        - images ``(B, 3, 224, 224)`` -> ``(B, num_classes)``

    Example:
        >>> vit = {name}(img_size=32, num_classes=10, depth=1)
        >>> vit(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    return MODELS.register(
        name,
        paper=paper,
        tags=("vision_transformer", "classification", "paper_config"),
        complexity="O(N^2 D) per block with mha, N = (H/P)(W/P) + 1",
    )(factory)


vit_tiny_patch16_224 = _factory("vit_tiny_patch16_224")
vit_small_patch16_224 = _factory("vit_small_patch16_224")
vit_base_patch16_224 = _factory("vit_base_patch16_224")
vit_large_patch16_224 = _factory("vit_large_patch16_224")
