"""The ``models`` family: whole networks.

Members register themselves when imported here (docs/design.md section 3).
"""

from attnzoo.models import decoder_lm, lra, resnet, transformer, vit  # noqa: F401  (register)
from attnzoo.models.decoder_lm import DecoderLM
from attnzoo.models.lra import EncoderClassifier
from attnzoo.models.transformer import Transformer
from attnzoo.models.vit import VisionTransformer

__all__ = ["DecoderLM", "EncoderClassifier", "Transformer", "VisionTransformer"]
