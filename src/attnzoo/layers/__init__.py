"""Shared building blocks: attention base, probe, MLPs, convs, norms, dropout, drop path, patch."""

from attnzoo.layers.attention_base import AttentionBase, as_attention_mask
from attnzoo.layers.channel_ops import scale_channels, spatial_mean
from attnzoo.layers.conv import ConvNormAct
from attnzoo.layers.drop_path import DropPath, drop_path
from attnzoo.layers.dropout import Dropout
from attnzoo.layers.helpers import make_divisible, to_2tuple
from attnzoo.layers.mlp import Mlp, SqueezeMlp
from attnzoo.layers.norms import LayerNorm2d
from attnzoo.layers.patch_embed import PatchEmbed
from attnzoo.layers.probe import AttentionProbe, probes_recording
from attnzoo.layers.vision_utils import check_feature_map, create_act, reduced_channels
from attnzoo.layers.zpool import ZPoolGate, zpool

__all__ = [
    "AttentionBase",
    "AttentionProbe",
    "ConvNormAct",
    "DropPath",
    "Dropout",
    "LayerNorm2d",
    "Mlp",
    "PatchEmbed",
    "SqueezeMlp",
    "ZPoolGate",
    "as_attention_mask",
    "check_feature_map",
    "create_act",
    "drop_path",
    "make_divisible",
    "probes_recording",
    "reduced_channels",
    "scale_channels",
    "spatial_mean",
    "to_2tuple",
    "zpool",
]
