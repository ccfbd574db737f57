"""The ``models`` family: whole networks.

Members register themselves when imported here (DESIGN.md section 3).
"""

from attnzoo.models import resnet  # noqa: F401  (imports register the models)
