"""Seeing what attention does: weight capture, maps, masks, positional pictures, the gallery.

``record_attention`` captures the weights of any model. The numeric functions (rollout, mean
attention distance, position-embedding similarity, patch-embedding components, mask grids,
the binary counter) need only torch; the ``plot_*`` functions and :func:`plot` import matplotlib
when they run (``pip install 'attnzoo[viz]'``), never at ``import attnzoo.viz``. Every plot
function returns the matplotlib ``Figure`` and takes ``ax=`` (draw into your axes) and ``out=``
(save a PNG).
"""

from attnzoo.viz._demos import demo_images
from attnzoo.viz.charts import (
    NadarayaWatsonExample,
    nadaraya_watson_example,
    plot_nadaraya_watson,
    plot_nadaraya_watson_weights,
)
from attnzoo.viz.compare import demo_mechanism_options, mechanism_weights, plot_mechanisms
from attnzoo.viz.gallery import KINDS, plot
from attnzoo.viz.maps import attention_rollout, plot_attention, plot_heads, plot_rollout
from attnzoo.viz.masks import demo_options, mask_grid, pattern_names, plot_mask, plot_patterns
from attnzoo.viz.positional import (
    binary_counter,
    plot_binary_counter,
    plot_position_similarity,
    plot_sinusoidal,
    position_embedding_similarity,
    sinusoid_heatmap,
)
from attnzoo.viz.record import record_attention
from attnzoo.viz.vision_maps import VISION_MAPS, plot_vision_maps, vision_attention_maps
from attnzoo.viz.vit import (
    mean_attention_distance,
    patch_embedding_components,
    plot_attention_distance,
    plot_patch_components,
)

__all__ = [
    "KINDS",
    "VISION_MAPS",
    "NadarayaWatsonExample",
    "attention_rollout",
    "binary_counter",
    "demo_images",
    "demo_mechanism_options",
    "demo_options",
    "mask_grid",
    "mean_attention_distance",
    "mechanism_weights",
    "nadaraya_watson_example",
    "patch_embedding_components",
    "pattern_names",
    "plot",
    "plot_attention",
    "plot_attention_distance",
    "plot_binary_counter",
    "plot_heads",
    "plot_mask",
    "plot_mechanisms",
    "plot_nadaraya_watson",
    "plot_nadaraya_watson_weights",
    "plot_patch_components",
    "plot_patterns",
    "plot_position_similarity",
    "plot_rollout",
    "plot_sinusoidal",
    "plot_vision_maps",
    "position_embedding_similarity",
    "record_attention",
    "sinusoid_heatmap",
    "vision_attention_maps",
]
