"""Faults as plug-ins: one module per family, `FAULTS` the only list, one runner.

- `base`: the `Fault` protocol, `FaultReport`, roles, what a fault needs, always-heal helpers;
- `process`, `power`, `cluster_ops`, `network`, `switch`: the faults, one class each;
- `step`: `FAULTS` (kind -> fault) and `FaultStep` (parsed from 'kind:target');
- `runner`: `FaultRunner` and `inject` (the one way a fault is run).

A new fault is one class in its family's module (added to that module's
`FAULTS` tuple) and one test.
"""

from experiments.workload.faults.base import Deployment, Fault, FaultReport
from experiments.workload.faults.runner import CodeFault, FaultRunner, Progress, inject
from experiments.workload.faults.step import FAULTS, KINDS, FaultStep, check_faults

__all__ = [
    "FAULTS",
    "KINDS",
    "CodeFault",
    "Deployment",
    "Fault",
    "FaultReport",
    "FaultRunner",
    "FaultStep",
    "Progress",
    "check_faults",
    "inject",
]
