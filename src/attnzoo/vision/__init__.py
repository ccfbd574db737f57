"""The ``vision`` family: ``(B, C, H, W)`` attention plug-ins from the survey's vision article.

Members register themselves when imported here (docs/design.md section 3). Domains follow the
survey: channel, spatial, self-attention, mixed (channel and spatial) and structural.
"""

from attnzoo.vision import (  # noqa: F401  (imports register the modules)
    a2,
    arm,
    bam,
    cbam,
    ccnet,
    coord,
    dnl,
    eca,
    fca,
    ffm,
    gather_excite,
    gc,
    gct,
    gsop,
    non_local,
    outlook,
    psa,
    residual_attention,
    reverse_attention,
    se,
    simam,
    sk,
    split,
    srm,
    stdc_fusion,
    stn,
    triplet,
)
from attnzoo.vision.base import VisionModule

__all__ = ["VisionModule"]
