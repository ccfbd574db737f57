"""``attnzoo.masks``: FlexAttention-style mask functions ``mask_mod(b, h, q_idx, kv_idx)``.

See :mod:`attnzoo.functional.masks` for the definitions.
"""

from attnzoo.functional.masks import *  # noqa: F403
from attnzoo.functional.masks import __all__  # noqa: F401
