# Make targets for the local Kubernetes test control plane (tests/cluster/cluster.py).
# Included from the top Makefile, which defines PY and the `venv` target.
PY ?= .cache/venv/bin/python
CLUSTER := $(PY) tests/cluster/cluster.py

.PHONY: cluster-up cluster-down cluster-status cluster-build cluster-b-up cluster-b-down cluster-b-status

cluster-up: venv ## Build what is missing, start or reuse the stack; ends with `export KUBECONFIG=...`
	$(CLUSTER) up

cluster-down: venv ## Stop every process of the stack, and of the second cluster (B) if it runs
	$(CLUSTER) down

cluster-status: venv ## Show the stack's processes; fails unless it is healthy
	$(CLUSTER) status

cluster-build: venv ## Only build the binaries into ~/.cache/kubesnap/<hash>/bin
	$(CLUSTER) build

cluster-b-up: venv ## Start or reuse cluster A, then the second cluster B on A's CSI driver; ends with B's `export KUBECONFIG=...`
	$(CLUSTER) up --second

cluster-b-down: venv ## Stop only the second cluster (B)
	$(CLUSTER) down --second

cluster-b-status: venv ## Show B's processes; fails unless B is healthy on the running cluster A
	$(CLUSTER) status --second
