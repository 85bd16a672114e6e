# Build and test tooling for tunnelwall.cloudflared. CI runs `bash .ci/run`, i.e. `make test` on a fresh clone.
# Every tool comes from PyPI into venvs under .venv/ (mk/venvs.mk).
#
# Adding a test: put it in tests/unit (pure Python, no root), tests/integration (real servers on loopback,
# ansible-playbook runs; no root) or tests/integration_lab (lab hosts; root - marked `lab` and skipped without
# root by tests/conftest.py). Mark it `once` (pytest.ini) only when no ansible-core version can change its outcome.
# Run it: `make unit-latest PYTEST_ARGS='-k name'`, or `make integration-latest PYTEST_ARGS='tests/integration/x.py'`
# (tests/... paths replace the default folders), or plain `pytest tests/unit` in any venv with requirements-dev.txt.
#
#   make test         venvs, collection, sanity (both venvs), lint, packaging, pytest (core219 without `once`), molecule, pytest (latest)
#   make unit         pytest tests/unit in both venvs
#   make integration  pytest tests/integration and tests/integration_lab in both venvs (lab tests need root)
#   make sanity       ansible-test sanity with ansible-core 2.19 (Python 3.11) and the newest ansible-core
#   make lint         ansible-lint (production profile) and antsibull-changelog lint
#   make molecule     molecule test of every scenario in extensions/molecule (lab hosts; root)
#   make demo         root: the site playbook on a lab + report (KEEP_LAB=1 keeps it); not root: the plan only
#   make bench        tests/bench/run_all.py in .venv/bench (PyPI "ansible", i.e. with community.general)
#   make collection   build the collection and install it into .build/collections
#   make venvs        create/refresh .venv/core219 and .venv/latest
#   make pythons      show the interpreters the venvs are built with
#   make clean        remove .build/ (keeps the venvs)
#   make distclean    remove .build/ and .venv/
#
# Overrides: PYTHON_core219=/path/to/python3.11, PYTHON_latest=..., PYTHON_bench=..., PYTEST_ARGS='-x -k foo',
#            SANITY_ARGS='--test pylint', ANSIBLE_LINT_ARGS=--strict, PYTEST_SELECT_core219= (core219 runs `once` too).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules --no-print-directory

ROOT := $(CURDIR)
NAMESPACE := tunnelwall
NAME := cloudflared
VENV_DIR := $(ROOT)/.venv
BUILD_DIR := $(ROOT)/.build
COLLECTIONS_DIR := $(BUILD_DIR)/collections
COLLECTION_DIR := $(COLLECTIONS_DIR)/ansible_collections/$(NAMESPACE)/$(NAME)
DIST_DIR := $(BUILD_DIR)/dist

# Tests, lint, demo and bench see only the collection built from the working tree (never ~/.ansible or
# site-packages), and Python imports ansible_collections.tunnelwall.cloudflared from that same copy.
TEST_ENV := ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_DIR) \
	ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=False \
	ANSIBLE_HOME=$(BUILD_DIR)/ansible-home \
	PYTHONPATH=$(COLLECTIONS_DIR)

include mk/venvs.mk

# ---------------------------------------------------------------------------
# The collection, rebuilt on every run so the installed copy matches the working tree (galaxy.yml's build_ignore
# decides what ships).
# ---------------------------------------------------------------------------
.PHONY: collection
collection: venv-latest
	@rm -rf $(DIST_DIR) $(COLLECTIONS_DIR)
	@mkdir -p $(DIST_DIR) $(COLLECTIONS_DIR)
	$(TEST_ENV) $(VENV_DIR)/latest/bin/ansible-galaxy collection build --force --output-path $(DIST_DIR) $(ROOT)
	$(TEST_ENV) $(VENV_DIR)/latest/bin/ansible-galaxy collection install --offline --force \
		-p $(COLLECTIONS_DIR) $(DIST_DIR)/$(NAMESPACE)-$(NAME)-*.tar.gz

# ---------------------------------------------------------------------------
# pytest
# ---------------------------------------------------------------------------
PYTEST_ARGS ?=
# Tests marked `once` (pytest.ini: packets, rulesets, processes, protocols - run by the lab hosts' own Python
# whatever the venv) run in the latest venv only; everything that exercises ansible-core runs in both.
PYTEST_SELECT_core219 := -m 'not once'
PYTEST_SELECT_latest :=
UNIT_DIRS := tests/unit
INTEGRATION_DIRS := tests/integration tests/integration_lab

# $(call run_pytest,VENV,DIRS): pytest with the VENV's selection over DIRS, or over the tests/... paths that
# PYTEST_ARGS names.
define run_pytest
	@cd $(ROOT); \
	dirs=$$(for d in $(2); do if [ -d "$$d" ]; then echo "$$d"; fi; done); \
	named=$$(for a in $(PYTEST_ARGS); do case "$$a" in (tests/*) echo "$$a";; esac; done); \
	if [ -n "$$named" ]; then dirs=; fi; \
	echo ">>> pytest in .venv/$(1): ansible-core $$($(VENV_DIR)/$(1)/bin/python -c 'import ansible.release as r; print(r.__version__)')"; \
	PATH=$(VENV_DIR)/$(1)/bin:$$PATH $(TEST_ENV) $(VENV_DIR)/$(1)/bin/pytest $(PYTEST_SELECT_$(1)) $(PYTEST_ARGS) $$dirs
endef

.PHONY: unit integration $(addprefix pytest-,$(VENVS)) $(addprefix unit-,$(VENVS)) $(addprefix integration-,$(VENVS))
unit: $(addprefix unit-,$(VENVS))
integration: $(addprefix integration-,$(VENVS))
$(addprefix unit-,$(VENVS)): unit-%: venv-% collection
	$(call run_pytest,$*,$(UNIT_DIRS))
$(addprefix integration-,$(VENVS)): integration-%: venv-% collection debian-packages
	$(call run_pytest,$*,$(INTEGRATION_DIRS))
# Unit and integration tests in one pytest run per venv (what `make test` uses).
$(addprefix pytest-,$(VENVS)): pytest-%: venv-% collection debian-packages
	$(call run_pytest,$*,$(UNIT_DIRS) $(INTEGRATION_DIRS))

# ---------------------------------------------------------------------------
# Everything, in CI order, failing fast; pytest with the latest venv last, so its summary is the last line.
# ---------------------------------------------------------------------------
.PHONY: test
test: venvs collection sanity lint packaging pytest-core219 molecule pytest-latest

include mk/sanity.mk mk/packaging.mk mk/lab.mk

.PHONY: clean distclean help FORCE
clean: lab-down
	rm -rf $(BUILD_DIR)
distclean: clean
	rm -rf $(VENV_DIR)
help:
	@sed -n 's/^#   make /make /p' $(MAKEFILE_LIST)
FORCE:
