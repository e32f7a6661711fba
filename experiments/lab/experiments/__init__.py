"""One module per experiment (typed `Params`, `run`, tables, figures, `EXPERIMENT`): found by `lab.registry`."""
