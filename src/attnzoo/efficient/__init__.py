"""The ``efficient`` family: long-sequence attention.

Members register themselves when imported here (docs/design.md section 3). Groups: patterns,
clustering, low-rank, kernel and attention-free (see docs/efficient/).
"""

from attnzoo.efficient import (  # noqa: F401  (imports register the mechanisms)
    aft,
    bigbird,
    fnet,
    global_tokens,
    gmlp,
    linear,
    linformer,
    local,
    longformer,
    memory_efficient,
    mixer,
    nystrom,
    performer,
    poolformer,
    reformer,
    resmlp,
    routing,
    sinkhorn,
    sparse_transformer,
    strided,
    synthesizer,
)
