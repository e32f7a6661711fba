"""The experiment harness, one sub-package per concern; arrows point one way.

- `runtime`: real processes (start, stop, freeze by pid), the service stack, NATS providers, the environment record.
- `workload`: open-loop and closed-loop load, faults, accounting by message id.       (imports runtime)
- `results`: the result schema, the one percentile function, plots, the report.       (imports nothing of ours)
- `lab`: RunContext, Session, phase pipeline, experiments, their registry.        (imports workload, results, runtime)
- `batch`: batch files, planning, the papermill runner.                               (imports results, runtime)
- `bench`: backend and services benches, the bare chain, the demo.                    (imports runtime, workload)

`pyproject.toml` holds these rules as import-linter contracts, checked by the test command.
"""
