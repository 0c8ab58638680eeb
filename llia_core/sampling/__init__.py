"""Schedules and sampler loops (schedulers live apart from models, as in diffusers)."""

from .samplers import ConsistencyRun, guided, sample_consistency, sample_teacher
from .schedules import consistency_scheduler, teacher_scheduler, training_scheduler

__all__ = ["ConsistencyRun", "consistency_scheduler", "guided", "sample_consistency", "sample_teacher",
           "teacher_scheduler", "training_scheduler"]
