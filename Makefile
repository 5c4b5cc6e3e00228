# Developer entry points. README.md names two of them: `make demo` and `make test`.
# Everything expensive lives under .cache/ (git-ignored) so a second run is fast.

SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT := $(abspath .)
VENV := $(ROOT)/.cache/venv
PY := $(VENV)/bin/python
COLLECTIONS := $(ROOT)/.cache/collections
COLLECTION := $(COLLECTIONS)/ansible_collections/kubesnap/snapshots
# ansible-test insists its working directory is physically inside ansible_collections/, so sanity
# runs on a copy of the files git knows (tracked, and untracked but not ignored).
SANITY_TREE := $(ROOT)/.cache/sanity/ansible_collections/kubesnap/snapshots
# ansible-test bootstraps pip in its sanity virtualenvs with this script; see tests/utils/get_pip_offline.py.
GET_PIP := $(HOME)/.ansible/test/cache/get_pip_24_2.py
PYTEST := cd $(COLLECTION) && PYTHONPATH=$(COLLECTIONS) ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) $(VENV)/bin/pytest

export PATH := $(VENV)/bin:$(PATH)

.PHONY: help venv collection test lint sanity units integration molecule demo bench build rbac-docs ee

help:
	@echo "make demo   - bring up the local control plane and run the snapshot cycle against it"
	@echo "make test   - lint, ansible-test sanity, unit and integration tests"

# uv installs the same pins as pip would, in parallel from its cache: on a clean clone pip took ~70 CPU-seconds (and
# over a minute with nothing else to run beside it), uv ~10. pip only bootstraps uv, at the version pinned here.
# --compile-bytecode writes the .pyc files pip writes: without them, where PYTHONDONTWRITEBYTECODE is set, every
# interpreter the tests start compiles all it imports (ansible-playbook's imports took 0.7 s of CPU instead of 0.45).
# uv reads neither pip.conf nor PIP_* variables: a package index mirror is given to it as UV_INDEX_URL.
UV_PIN := uv==0.13.9

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(UV_PIN)
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -r requirements-dev.txt
	touch $@

# A .pth line run by every start of the venv's Python puts the venv's bin/ first on PATH, so its tools work without
# activating it: `.cache/venv/bin/molecule test` finds ansible-config and ansible-playbook there (it ran them from
# PATH and ended in a traceback), and `python3` in the molecule scenario is the venv's, which has the requirements.
VENV_PATH_HOOK := $(VENV)/.path-hook

$(VENV_PATH_HOOK): $(VENV)/.installed
	$(PY) -c 'import sysconfig; open(sysconfig.get_paths()["purelib"] + "/kubesnap-venv-path.pth", "w").write("import os, sys; b = os.path.dirname(sys.executable); p = os.environ.get(\"PATH\", \"\"); os.environ[\"PATH\"] = p if b in p.split(os.pathsep) else b + os.pathsep + p\n")'
	touch $@

venv: $(VENV)/.installed $(VENV_PATH_HOOK)

# ansible-test and the plugins' imports need the collection at ansible_collections/kubesnap/snapshots.
collection: venv
	@mkdir -p $(dir $(COLLECTION))
	@ln -sfn $(ROOT) $(COLLECTION)
	@mkdir -p $(dir $(GET_PIP))
	@cp tests/utils/get_pip_offline.py $(GET_PIP)

include tests/cluster/cluster.mk

# The four parts run side by side, each one's output printed whole when it ends. Lint, sanity and the unit tests are
# mostly one process each: beside the system tests they take the cores those leave idle while the control plane
# starts and the cluster-wide tests run one at a time (measured: ~50% busy on 2 cores for the first 7 minutes when
# run in turn). Every part runs even when another failed (-k), and a failed part fails `make test`. TEST_JOBS=1 runs
# them in turn.
TEST_JOBS ?= 4

test: collection
	$(MAKE) --no-print-directory -k -j$(TEST_JOBS) --output-sync=target lint sanity units integration

lint: collection
	ruff check plugins tests bench
	cd $(COLLECTION) && ansible-lint --profile production roles playbooks

sanity: collection
	@rm -rf $(SANITY_TREE) && mkdir -p $(SANITY_TREE)
	git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C $(SANITY_TREE)
	cd $(SANITY_TREE) && git init -q && git add -A
	cd $(SANITY_TREE) && ansible-test sanity --venv --python 3.11 --color no

# Tests run side by side (pytest-xdist; 0 runs them in one process). The system tests mostly wait (on the apiserver,
# the controllers, module processes), so they take more workers than the machine has cores; tests that share state
# are kept apart by markers (tests/system/conftest.py). With 4, the 2 cores sat half idle for a minute or more whenever
# the workers were all in tests that sleep through retries (the fault tests' backoffs); 6 keep them busy (measured on
# `make test`: 9:23 with 4, 8:45 with 6, the same CPU).
UNIT_WORKERS ?= 2
SYSTEM_WORKERS ?= 6

units: collection
	$(PYTEST) -q -p no:cacheprovider -n $(UNIT_WORKERS) tests/unit

# The pytest fixture starts the local control plane (or reuses a running one) and stops what it started.
integration: collection
	$(PYTEST) -q -p no:cacheprovider -n $(SYSTEM_WORKERS) --dist loadgroup tests/system

# Also part of `integration` (tests/system/test_molecule.py); this runs the scenario alone.
molecule: collection cluster-up
	MOLECULE_PYTHON=$(PY) molecule test

demo: collection cluster-up
	@mkdir -p .cache/demo
	ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) ANSIBLE_LOCALHOST_WARNING=false ansible-playbook -i localhost, \
		-e ansible_python_interpreter=$(PY) playbooks/demo.yml

bench: collection cluster-up
	$(PY) bench/retention.py
	$(PY) bench/cycle.py

# docs/rbac.yml is the rbac role's template rendered with its defaults (tests/unit/test_rbac_docs.py holds them equal).
rbac-docs: venv
	$(PY) tests/utils/rbac_docs.py

# galaxy.yml holds the version; the tarball, the EE's staged input and the image tag are named from it here.
VERSION := $(shell sed -n 's/^version:[[:space:]]*//p' galaxy.yml)
TARBALL := .cache/dist/kubesnap-snapshots-$(VERSION).tar.gz

build: collection
	ansible-galaxy collection build --force --output-path .cache/dist

# The build context of the execution environment (no container engine needed), complete from a fresh clone: the
# collection tarball is built and staged where execution-environment.yml takes it (a name without the version).
ee: build
	@test -f $(TARBALL) || { echo "$(TARBALL) was not built" >&2; exit 1; }
	rm -rf .cache/ee-input && mkdir -p .cache/ee-input && cp $(TARBALL) .cache/ee-input/kubesnap-snapshots.tar.gz
	ansible-builder create -f execution-environment.yml -c .cache/ee
	@echo "Build the image: ansible-builder build -f execution-environment.yml -c .cache/ee -t <registry>/kubesnap-snapshots-ee:$(VERSION)"
