"""Positional encodings: absolute, 2-D, relative (Shaw, T5, ALiBi, Swin), RoPE."""

from attnzoo.positional.alibi import ALiBi, alibi_slopes
from attnzoo.positional.learned import LearnedPositionalEmbedding
from attnzoo.positional.learned_2d import LearnedPositionalEmbedding2d
from attnzoo.positional.relative import RelativePositionEmbedding, relative_positions
from attnzoo.positional.rope import RotaryEmbedding
from attnzoo.positional.sincos_2d import SinCos2d
from attnzoo.positional.sinusoidal import SinusoidalPositionalEncoding, sinusoid_table
from attnzoo.positional.swin_bias import SwinRelativeBias, window_relative_index
from attnzoo.positional.t5_bias import T5RelativeBias, t5_bucket

__all__ = [
    "ALiBi",
    "LearnedPositionalEmbedding",
    "LearnedPositionalEmbedding2d",
    "RelativePositionEmbedding",
    "RotaryEmbedding",
    "SinCos2d",
    "SinusoidalPositionalEncoding",
    "SwinRelativeBias",
    "T5RelativeBias",
    "alibi_slopes",
    "relative_positions",
    "sinusoid_table",
    "t5_bucket",
    "window_relative_index",
]
