# Entry points; each target sets up .venv itself on a fresh clone.
.PHONY: main test bench demo

main:
	bash scripts/main.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bootstrap.sh && .venv/bin/python -m experiments.bench_backends
