# System tests: run against the local control plane of tests/cluster/cluster.py.
