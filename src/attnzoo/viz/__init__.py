"""Seeing what attention does: weight capture (``record_attention``)."""

from attnzoo.viz.record import record_attention

__all__ = ["record_attention"]
