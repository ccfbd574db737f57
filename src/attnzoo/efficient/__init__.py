"""The ``efficient`` family: long-sequence attention.

Members register themselves when imported here (DESIGN.md section 3).
"""
