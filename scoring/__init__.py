"""Stepwise scoring: PRM adapters, answer grading, metrics, step splitting and formats.

Plain Python over plain data. This package never imports Django or Celery, and
``import scoring`` does not import torch: heavy imports live inside the functions
that need them.
"""

from __future__ import annotations
