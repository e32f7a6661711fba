# Entry points; each target sets up .venv itself on a fresh clone.
.PHONY: main main-quick test bench demo lab

main:
	bash scripts/main.sh

main-quick:
	bash scripts/main.sh --quick

test:
	bash scripts/test.sh

bench:
	bash scripts/bootstrap.sh && .venv/bin/python -m experiments.bench.backends

demo:
	bash scripts/bootstrap.sh && .venv/bin/python -m experiments.bench.demo

# JupyterLab on 127.0.0.1 with the notebooks, with the project's kernel ("Python (queue-lab)", in the venv);
# --allow-root as root (containers, devcontainers). ARGS go to `jupyter lab` (e.g. ARGS=--port=8899).
lab:
	bash scripts/lab.sh $(ARGS)

# The docker-compose stack (docker/README.md). Compose v2 or Debian's 1.29,
# bridge or host networking: scripts/compose.sh picks.
.PHONY: docker-build docker-up docker-down docker-logs docker-ps docker-test

docker-build:
	bash docker/build-images.sh

docker-up:
	bash scripts/docker-up.sh

# Containers and network go; the volumes (NATS store, ledger) stay: `make docker-down V=1` removes them too.
docker-down:
	bash scripts/compose.sh down --remove-orphans $(if $(V),-v)

docker-logs:
	bash scripts/compose.sh logs --tail=200 $(ARGS)

docker-ps:
	bash scripts/compose.sh ps

docker-test:
	bash scripts/test-nats-integration.sh
