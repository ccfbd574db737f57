"""The arena's tasks, registered in the ``arena`` family (``attnzoo.create(name, seed=...)``).

Importing this package registers every task; :mod:`attnzoo.registry` imports it on first need.
"""

from attnzoo.arena.tasks import image, listops, pathfinder, retrieval, text  # noqa: F401
from attnzoo.arena.tasks.base import Split, Task

__all__ = ["Split", "Task"]
