"""The fault registry (`FAULTS`, the only list of kinds) and `FaultStep`: which fault, on whom, when, how long.

A step is written `kind` or `kind:target` in notebooks and batch files
('kill', 'pause:broker', 'kill:leader', 'stepdown', 'switch:nats'...). An
unknown kind or a target the fault does not take is refused when the step
is made, naming what it accepts: before any deployment starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.workload.faults import cluster_ops, network, power, process, switch
from experiments.workload.faults.base import CLUSTER_ROLES, Fault

NO_FAULT = "none"
FAULTS: dict[str, Fault] = {
    f.kind: f for family in (process, power, cluster_ops, network, switch) for f in family.FAULTS
}
KINDS: tuple[str, ...] = (NO_FAULT, *FAULTS)


@dataclass(frozen=True)
class FaultStep:
    """One fault: `kind` on `target`, `down_s` long, triggered by time or by progress (requests issued)."""

    kind: str = NO_FAULT
    target: str = "queue"
    at_s: float | None = 2.0  # seconds after the load started
    after_requests: int | None = None  # or: once this many requests were issued
    down_s: float = 1.0  # how long the target stays down (or frozen)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault {self.kind!r}: kind must be one of {', '.join(KINDS)}")
        if self.kind != NO_FAULT and self.target not in self.fault.targets:
            raise ValueError(f"fault {self.kind}:{self.target}: target must be one of {', '.join(self.fault.targets)}")

    @property
    def fault(self) -> Fault:
        """The plug-in that runs this step (KeyError for `none`: there is nothing to run)."""
        return FAULTS[self.kind]

    @property
    def label(self) -> str:
        return NO_FAULT if self.kind == NO_FAULT else f"{self.kind}:{self.target}"

    @property
    def needs_cluster(self) -> bool:
        return self.kind != NO_FAULT and (self.target in CLUSTER_ROLES or "cluster" in self.fault.needs)

    @classmethod
    def parse(cls, text: str, **kwargs: float | int | None) -> FaultStep:
        """'none', 'kill', 'pause:broker', 'power-loss', 'kill:leader', 'stepdown', 'switch:nats' ...

        Without a target, the fault's default (`queue` for most: where the
        queue lives). A switch names the queue it switches to.
        """
        kind, _, target = text.partition(":")
        if kind not in KINDS:
            raise ValueError(f"fault {text!r}: kind must be one of {', '.join(KINDS)}")
        if kind == NO_FAULT:
            return cls(**kwargs)  # type: ignore[arg-type]
        fault = FAULTS[kind]
        target = target or fault.default_target
        if target not in fault.targets:
            what = "target must be one of" if fault.default_target else "it names the target it switches to, one of"
            raise ValueError(f"fault {text!r}: {what} {', '.join(fault.targets)}")
        return cls(kind=kind, target=target, **kwargs)  # type: ignore[arg-type]


def check_faults(texts: list[str] | tuple[str, ...]) -> list[FaultStep]:
    """Every text parsed, so a typo fails before anything starts (a batch file, a notebook's parameters)."""
    return [FaultStep.parse(t) for t in texts]


def plot_name(text: str) -> str:
    """A fault's short name for figures, from its text as written ('power-loss:leader' -> 'leader loses power')."""
    kind, _, target = text.partition(":")
    return FAULTS[kind].plot_name(target) if kind in FAULTS else text


def rank(text: str) -> tuple[int, int]:
    """Order of faults in figures: the registry's order of kinds, then the role order of targets."""
    kind, _, target = text.partition(":")
    roles = ("", "leader", "follower", "quorum", "queue", "cluster", "broker", "processor")
    return (list(FAULTS).index(kind) if kind in FAULTS else len(FAULTS), roles.index(target) if target in roles else 9)
