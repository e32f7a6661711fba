# Entry points; each target sets up .venv itself on a fresh clone.
.PHONY: main main-quick test bench demo lab

main:
	bash scripts/main.sh

main-quick:
	bash scripts/main.sh --quick

test:
	bash scripts/test.sh

bench:
	bash scripts/bootstrap.sh && .venv/bin/python -m experiments.bench_backends

demo:
	bash scripts/bootstrap.sh && .venv/bin/python -m experiments.demo

# JupyterLab on 127.0.0.1 with the notebooks (installs the 'lab' extra once).
lab:
	bash scripts/bootstrap.sh && .venv/bin/python -m pip install --quiet -e '.[dev,lab]' && \
	  cd notebooks && ../.venv/bin/jupyter lab --ip 127.0.0.1 --no-browser
