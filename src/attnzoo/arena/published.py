"""The Long Range Arena paper's published numbers (Tay et al. 2021, Tables 1 and 2).

Transcribed from the camera-ready paper (two independent transcriptions agree on every number).
Printed beside the arena's own results and always labelled as published; averages are
recomputed from the task scores (the paper's Sinkhorn average, 51.39, does not match its row,
whose mean is 51.48).
"""

from __future__ import annotations

__all__ = ["LRA_MECHANISMS", "LRA_TABLE1", "LRA_TABLE2", "LRA_TASKS"]

LRA_TASKS = ("listops", "text", "retrieval", "image", "pathfinder")

# LRA model name -> attnzoo mechanism
LRA_MECHANISMS = {
    "Transformer": "mha",
    "Local Attention": "local",
    "Sparse Trans.": "sparse_transformer",
    "Longformer": "longformer",
    "Linformer": "linformer",
    "Reformer": "reformer",
    "Sinkhorn Trans.": "sinkhorn",
    "Synthesizer": "synthesizer",
    "BigBird": "bigbird",
    "Linear Trans.": "linear",
    "Performer": "performer",
}

# Table 1: test accuracy (%) on ListOps, Text, Retrieval, Image, Pathfinder; the printed Avg.
LRA_TABLE1: dict[str, tuple[tuple[float, float, float, float, float], float]] = {
    "Transformer": ((36.37, 64.27, 57.46, 42.44, 71.40), 54.39),
    "Local Attention": ((15.82, 52.98, 53.39, 41.46, 66.63), 46.06),
    "Sparse Trans.": ((17.07, 63.58, 59.59, 44.24, 71.71), 51.24),
    "Longformer": ((35.63, 62.85, 56.89, 42.22, 69.71), 53.46),
    "Linformer": ((35.70, 53.94, 52.27, 38.56, 76.34), 51.36),
    "Reformer": ((37.27, 56.10, 53.40, 38.07, 68.50), 50.67),
    "Sinkhorn Trans.": ((33.67, 61.20, 53.83, 41.23, 67.45), 51.39),
    "Synthesizer": ((36.99, 61.68, 54.67, 41.61, 69.45), 52.88),
    "BigBird": ((36.05, 64.02, 59.29, 40.83, 74.87), 55.01),
    "Linear Trans.": ((16.13, 65.90, 53.09, 42.34, 75.30), 50.55),
    "Performer": ((18.01, 65.40, 53.82, 42.77, 77.05), 51.41),
}

# Table 2: training steps/s at 1K, 2K, 3K, 4K and peak memory (GB) per device; byte-level
# Text, batch 32, 4x4 TPU v3. Sparse Transformer and Longformer were not benchmarked.
# (The Synthesizer row is printed as published: 3K faster than 2K looks like a typo.)
LRA_TABLE2: dict[str, tuple[tuple[float, float, float, float], tuple[float, float, float, float]]]
LRA_TABLE2 = {
    "Transformer": ((8.1, 4.9, 2.3, 1.4), (0.85, 2.65, 5.51, 9.48)),
    "Local Attention": ((9.2, 8.4, 7.4, 7.4), (0.42, 0.76, 1.06, 1.37)),
    "Linformer": ((9.3, 9.1, 8.5, 7.7), (0.37, 0.55, 0.99, 0.99)),
    "Reformer": ((4.4, 2.2, 1.5, 1.1), (0.48, 0.99, 1.53, 2.28)),
    "Sinkhorn Trans.": ((9.1, 7.9, 6.6, 5.3), (0.47, 0.83, 1.13, 1.48)),
    "Synthesizer": ((8.7, 5.7, 6.6, 1.9), (0.65, 1.98, 4.09, 6.99)),
    "BigBird": ((7.4, 3.9, 2.7, 1.5), (0.77, 1.49, 2.18, 2.88)),
    "Linear Trans.": ((9.1, 9.3, 8.6, 7.8), (0.37, 0.57, 0.80, 1.03)),
    "Performer": ((9.5, 9.4, 8.7, 8.0), (0.37, 0.59, 0.82, 1.06)),
}
LRA_TABLE2_LENGTHS = (1024, 2048, 3072, 4096)
LRA_TABLE2_BATCH = 32
