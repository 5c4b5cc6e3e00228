# Make targets for the local Kubernetes test control plane (tests/cluster/cluster.py).
# Included from the top Makefile, which defines PY and the `venv` target.
PY ?= .cache/venv/bin/python
CLUSTER := $(PY) tests/cluster/cluster.py

.PHONY: cluster-up cluster-down cluster-status cluster-build

cluster-up: venv ## Build what is missing, start or reuse the stack; ends with `export KUBECONFIG=...`
	$(CLUSTER) up

cluster-down: venv ## Stop every process of the stack
	$(CLUSTER) down

cluster-status: venv ## Show the stack's processes; fails unless it is healthy
	$(CLUSTER) status

cluster-build: venv ## Only build the binaries into ~/.cache/kubesnap/<hash>/bin
	$(CLUSTER) build
