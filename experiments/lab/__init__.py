"""What a notebook imports: a RunContext per run, a Session per deployment, the experiments' registry."""

from experiments.lab.context import RunContext
from experiments.lab.session import Session
from experiments.lab.setup import Setup

__all__ = ["RunContext", "Session", "Setup"]
