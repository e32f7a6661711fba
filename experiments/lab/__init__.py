"""What a notebook imports: a RunContext per run, a Session per deployment, the suites and the registry."""

from experiments.lab import suites
from experiments.lab.session import RunContext, Session, Setup

__all__ = ["RunContext", "Session", "Setup", "suites"]
