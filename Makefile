# Build and test tooling for the tunnelwall.cloudflared collection.
#
# CI runs `bash .ci/run`, which is just `make test` on a fresh clone of a
# machine that has Python (pyenv) but nothing installed by hand: every tool
# used below is installed from PyPI into venvs under .venv/ by this Makefile.
#
#   make test         venvs, collection, sanity (both venvs), lint, pytest (core219 without the `once` tests, then latest)
#   make sanity       ansible-test sanity with ansible-core 2.19 (Python 3.11) and the newest ansible-core
#   make lint         ansible-lint (production profile) and antsibull-changelog lint
#   make unit         pytest tests/unit in both venvs
#   make integration  pytest tests/integration in both venvs
#   make molecule     molecule test of every scenario in extensions/molecule (lab hosts; root)
#   make demo         root: site playbook on a lab (2 firewalld, 2 ufw, QUIC blocked on ufw1) + report; KEEP_LAB=1 keeps it
#                     not root: resolve the egress plan only (tunnelwall.cloudflared.plan)
#   make bench        tests/bench/run_all.py in .venv/bench (PyPI "ansible", i.e. with community.general)
#   make collection   build the collection tarball and install it into .build/collections
#   make venvs        create/refresh .venv/core219 and .venv/latest
#   make pythons      show the interpreters the venvs are built with
#   make clean        remove .build/ (keeps the venvs)
#   make distclean    remove .build/ and .venv/
#
# Overrides: PYTHON_core219=/path/to/python3.11, PYTHON_latest=..., PYTHON_bench=...,
#            PYTEST_ARGS='-x -k foo', SANITY_ARGS='--test pylint', ANSIBLE_LINT_ARGS=--strict,
#            PYTEST_SELECT_core219= (core219 runs the `once` tests too).

SHELL := bash
# -e: stop at the first failing command of a recipe line; pipefail: a failing
# pip/pytest in front of a filter still fails the recipe.
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# `make test` must run its steps in the order listed (sanity, lint, pytest with
# core219, pytest with latest LAST) even if someone passes -j.
.NOTPARALLEL:
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules --no-print-directory

ROOT := $(CURDIR)
NAMESPACE := tunnelwall
NAME := cloudflared

VENV_DIR := $(ROOT)/.venv
BUILD_DIR := $(ROOT)/.build
# The collection as built from the working tree and installed from its tarball;
# tests, lint, demo and bench only ever see this copy.
COLLECTIONS_DIR := $(BUILD_DIR)/collections
COLLECTION_DIR := $(COLLECTIONS_DIR)/ansible_collections/$(NAMESPACE)/$(NAME)
DIST_DIR := $(BUILD_DIR)/dist
# ansible-test keeps its per-test sanity venvs and caches under $HOME/.ansible/test.
# It gets its own HOME inside .venv/ so that nothing is written to the real
# ~/.ansible and the sanity venvs survive `make clean` (they take minutes to build).
ANSIBLE_TEST_HOME := $(VENV_DIR)/ansible-test

# The venvs. core219: the oldest ansible-core we support (meta/runtime.yml says
# >=2.19.0), which is also the last one that runs on Python 3.11. latest: the
# newest ansible-core on the newest Python found. bench: PyPI's "ansible"
# package, i.e. ansible-core plus community.general and friends.
VENVS := core219 latest
ALL_VENVS := $(VENVS) bench
PY_MINORS_core219 := 11 11
PY_MINORS_latest := 12 99
PY_MINORS_bench := 12 99
PIP_SPEC_core219 := -r requirements.txt -r requirements-dev.txt ansible-core~=2.19.0
# No pin for latest: a fresh venv gets the newest ansible-core that runs on its
# Python (and that ansible-lint accepts).
PIP_SPEC_latest := -r requirements.txt -r requirements-dev.txt ansible-core
PIP_SPEC_bench := -r requirements.txt ansible aioquic trustme cryptography

# The environment every test, lint, demo and bench command runs in: the only
# collections Ansible can see are the installed copy in .build/collections
# (never ~/.ansible/collections, never a copy in site-packages), and Python can
# `import ansible_collections.tunnelwall.cloudflared...` from that same copy.
# ANSIBLE_HOME keeps Ansible's temp files and caches inside .build/. Each
# command also gets its venv's bin/ first on PATH, so a test that spawns
# ansible-playbook gets the ansible-core of the venv under test.
TEST_ENV := ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_DIR) \
	ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=False \
	ANSIBLE_HOME=$(BUILD_DIR)/ansible-home \
	PYTHONPATH=$(COLLECTIONS_DIR)

# Extra pytest options (pytest.ini holds the defaults).
PYTEST_ARGS ?=

# Which tests each venv runs. Tests marked `once` (pytest.ini) prove what happens on the host or on the wire -
# packets through a lab host's firewall, rulesets, files, killed and overlapping transactions, the probe against the
# fake edge's faults, the lab's own self-tests, QUIC datagrams - and no ansible-core version can change their
# outcome: the modules run on the lab hosts' own Python (/usr/bin/python3) whichever venv drives them. They run in
# the latest venv only, which halves their cost (they are most of the lab's minutes). Everything that exercises
# ansible-core runs in both venvs: ansible-playbook and ansible-doc runs, the role and the site playbooks on the lab
# (which take both firewall modules through a real change, a check and a rollback), argument specs and module
# argument handling (the bad-input suites), check and diff mode, action, lookup and filter plugins, and every unit
# test that is not marked. Mark a test `once` only when that holds for everything it asserts.
PYTEST_SELECT_core219 := -m 'not once'
PYTEST_SELECT_latest :=

# pip's cache lives in .venv/ too (like ansible-test's, see ANSIBLE_TEST_HOME),
# so that nothing is written outside the checkout; `make distclean` drops it.
PIP_ENV := PIP_CACHE_DIR=$(VENV_DIR)/.cache/pip

# pip prints one warning per package for the machine-wide extra index
# (file:///opt/pypi...) that does not exist here; drop that noise, keep the rest.
PIP_FILTER := { grep -v -e 'is ignored: it is neither a file nor a directory' || true; }

# ---------------------------------------------------------------------------
# Python discovery
# ---------------------------------------------------------------------------
# $(call find_python,MIN_MINOR,MAX_MINOR) prints the path of the newest Python
# 3.MIN..3.MAX that actually runs and can create venvs (has venv + ensurepip),
# or nothing. Candidates: versioned pythons on PATH (pyenv shims for versions
# that are not selected fail to run and are skipped), python3 on PATH, every
# pyenv-installed version, and the system/local interpreters.
find_python = $(shell \
	root=$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$${HOME:-/root}/.pyenv}"); \
	for c in python3.14 python3.13 python3.12 python3.11 python3 \
		"$$root"/versions/3.*/bin/python3 \
		/usr/local/bin/python3.[0-9] /usr/local/bin/python3.[0-9][0-9] \
		/usr/bin/python3.[0-9] /usr/bin/python3.[0-9][0-9]; do \
		p=$$(command -v "$$c" 2>/dev/null) || continue; \
		v=$$("$$p" -c 'import sys, venv, ensurepip; v = sys.version_info; \
			assert v[0] == 3 and $(1) <= v[1] <= $(2); print("%d.%d.%d" % v[:3])' 2>/dev/null) || continue; \
		case "$$v" in (3.*.*) echo "$$v $$p";; esac; \
	done | sort -V | tail -n 1 | cut -d' ' -f2-)

# $(call py_range,VENV): "3.11" or "3.12 or newer", for messages.
py_range = 3.$(word 1,$(PY_MINORS_$(1)))$(if $(filter 99,$(word 2,$(PY_MINORS_$(1)))), or newer,$(if $(filter-out $(word 1,$(PY_MINORS_$(1))),$(word 2,$(PY_MINORS_$(1)))),-3.$(word 2,$(PY_MINORS_$(1)))))

# ---------------------------------------------------------------------------
# Venvs
# ---------------------------------------------------------------------------
# (Static pattern rules throughout: make never applies implicit rules to
# .PHONY targets, and the stamps/specs must not count as intermediate files.)
.PHONY: venvs $(addprefix venv-,$(ALL_VENVS))
venvs: $(addprefix venv-,$(VENVS))
$(addprefix venv-,$(ALL_VENVS)): venv-%: $(VENV_DIR)/%/.stamp ;

# .venv/.NAME.spec records what a venv is built from (interpreter choice and pip
# spec). It is rewritten only when that changes, or when the venv's interpreter
# no longer runs (e.g. its Python was removed), so the venv is rebuilt exactly then.
$(ALL_VENVS:%=$(VENV_DIR)/.%.spec): $(VENV_DIR)/.%.spec: FORCE
	@mkdir -p $(@D)
	@spec='$(PY_MINORS_$*) $(PYTHON_$*) $(PIP_SPEC_$*)'; \
	if [ "$$(cat $@ 2>/dev/null)" != "$$spec" ] || \
		{ [ -e $(VENV_DIR)/$*/.stamp ] && ! $(VENV_DIR)/$*/bin/python -c '' 2>/dev/null; }; then \
		printf '%s\n' "$$spec" > $@; \
	fi

# The stamp is the last thing written, so an interrupted install is redone.
# The venv is recreated from scratch so no stale package survives a change.
$(ALL_VENVS:%=$(VENV_DIR)/%/.stamp): $(VENV_DIR)/%/.stamp: requirements.txt requirements-dev.txt $(VENV_DIR)/.%.spec
	@python='$(or $(PYTHON_$*),$(call find_python,$(word 1,$(PY_MINORS_$*)),$(word 2,$(PY_MINORS_$*))))'; \
	if [ -z "$$python" ]; then \
		echo "ERROR: no usable Python $(call py_range,$*) (one that runs and has venv and ensurepip) found for .venv/$*." >&2; \
		echo "       Looked at python3.1x/python3 on PATH, \$$(pyenv root)/versions/3.*/bin/python3, /usr/bin and /usr/local/bin." >&2; \
		echo "       Install one (e.g. 'pyenv install 3.13') or pass PYTHON_$*=/path/to/python3.x." >&2; \
		exit 1; \
	fi; \
	echo ">>> creating .venv/$* with $$python ($$("$$python" -V 2>&1))"; \
	rm -rf $(VENV_DIR)/$*; \
	"$$python" -m venv $(VENV_DIR)/$*
	$(PIP_ENV) $(VENV_DIR)/$*/bin/python -m pip install --quiet --upgrade pip 2>&1 | $(PIP_FILTER)
	$(PIP_ENV) $(VENV_DIR)/$*/bin/python -m pip install --quiet $(PIP_SPEC_$*) 2>&1 | $(PIP_FILTER)
	@$(VENV_DIR)/$*/bin/python -m pip list 2>/dev/null | grep -i -E '^(ansible|ansible-core|ansible-lint|antsibull-changelog|pytest) ' | sed 's/^/    /'
	@touch $@

# ---------------------------------------------------------------------------
# The collection: built from the working tree, installed from the tarball
# ---------------------------------------------------------------------------
# Phony on purpose: rebuilt on every make run so the installed copy always
# matches the working tree (build_ignore in galaxy.yml decides what ships).
.PHONY: collection
collection: venv-latest
	@rm -rf $(DIST_DIR) $(COLLECTIONS_DIR)
	@mkdir -p $(DIST_DIR) $(COLLECTIONS_DIR)
	$(TEST_ENV) $(VENV_DIR)/latest/bin/ansible-galaxy collection build --force --output-path $(DIST_DIR) $(ROOT)
	$(TEST_ENV) $(VENV_DIR)/latest/bin/ansible-galaxy collection install --offline --force \
		-p $(COLLECTIONS_DIR) $(DIST_DIR)/$(NAMESPACE)-$(NAME)-*.tar.gz

# ---------------------------------------------------------------------------
# Sanity
# ---------------------------------------------------------------------------
# ansible-test must run from .../ansible_collections/NAMESPACE/NAME, so each
# venv tests its own copy of the working tree (the files git tracks plus the
# untracked, not-ignored ones: what ansible-test itself would look at in a
# checkout) under .build/sanity/VENV/. The copy gets its own (empty) git
# repository: ansible-test walks up to the nearest .git to list files, and
# from /work/main's own repo it would see .build/ as ignored and test nothing.
#
# Sanity tests skipped here, and why:
#   pslint  - needs PowerShell (pwsh) and PSScriptAnalyzer, which come from
#             Microsoft's package feed and the PowerShell Gallery; neither can
#             be reached here.
#   validate-modules, for PowerShell modules (plugins/modules/*.ps1) only:
#             it needs pwsh to read their argument spec and crashes without
#             it. When pwsh is missing and such modules exist, validate-modules
#             runs separately with those .ps1 files excluded; their documentation
#             (the .py file beside each) is still validated, as it is by ansible-doc.
# Every other sanity test runs (ansible-test itself skips a test that has no
# files to look at, e.g. shellcheck while there is no *.sh file).
#
# Which Pythons the multi-version tests (compile, import) use:
#   core219 - `--python 3.11`: everything on the venv's Python 3.11.
#   latest  - no --python: the single-version tests use the venv's Python, and
#             compile/import run on every Python that ansible-core supports and
#             that is installed here (.venv/pythons/ links python3.9 ...
#             python3.14 to the real interpreters found, since the pyenv shims
#             of unselected versions refuse to run). Modules and module_utils
#             are thus checked on each managed-host Python from 3.9 (see
#             tests/config.yml), controller plugins on each controller Python.
#             A version that is not installed is reported as skipped.
SANITY_SKIP := pslint
SANITY_PYTHON_core219 = --python $(shell $(VENV_DIR)/core219/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
SANITY_PYTHON_latest =
SANITY_ARGS ?=
PY_LINKS := $(VENV_DIR)/pythons
TARGET_PY_MINORS := 9 10 11 12 13 14

# ansible-test installs each sanity test's requirements into its own venv and
# bootstraps pip there with a get-pip.py it downloads from ci-files.testing.ansible.com,
# which is not reachable here. It uses a cached copy instead if one exists at
# ~/.ansible/test/cache/get_pip_<version>.py, so we put this stand-in there: it
# bootstraps pip from the Python's own ensurepip and then lets pip install the
# requested pip version (and whatever else was asked) from PyPI.
define GET_PIP_STANDIN
"""Stand-in for get-pip.py, written by the Makefile (see there)."""
import subprocess
import sys

# ensurepip runs in a child process: it points PIP_CONFIG_FILE at /dev/null in
# its own environment, and the pip run below must still read the machine's pip
# configuration (certificate bundle, constraints).
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args])
if "--no-setuptools" in sys.argv:
    # ensurepip of Python < 3.12 also brings setuptools; the real get-pip would not.
    subprocess.call([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"],
                    stderr=subprocess.DEVNULL)
endef
export GET_PIP_STANDIN

.PHONY: sanity $(addprefix sanity-,$(VENVS)) sanity-pythons
sanity: $(addprefix sanity-,$(VENVS))

# python3.X links for ansible-test's multi-version tests (see above).
sanity-pythons:
	@rm -rf $(PY_LINKS); mkdir -p $(PY_LINKS)
	@$(foreach m,$(TARGET_PY_MINORS),p='$(call find_python,$(m),$(m))'; \
		if [ -n "$$p" ]; then ln -s "$$p" $(PY_LINKS)/python3.$(m); fi;)
	@echo ">>> Pythons for multi-version sanity tests: $$(cd $(PY_LINKS) && ls -v | tr '\n' ' ')"

$(addprefix sanity-,$(VENVS)): sanity-%: venv-% sanity-pythons
	@copy=$(BUILD_DIR)/sanity/$*/ansible_collections/$(NAMESPACE)/$(NAME); \
	rm -rf $(BUILD_DIR)/sanity/$*; mkdir -p $$copy; \
	git -C $(ROOT) ls-files -z --cached --others --exclude-standard \
		| tar -C $(ROOT) --null --files-from=- --ignore-failed-read -cf - 2>/dev/null \
		| tar -C $$copy -xf -; \
	git -C $$copy init --quiet
	@py=$(VENV_DIR)/$*/bin/python; \
	pipvers=$$($$py -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages; \
		print(*{get_venv_packages(types.SimpleNamespace(version=f"3.{m}"))["pip"] for m in range(8, 16)})'); \
	mkdir -p $(ANSIBLE_TEST_HOME)/.ansible/test/cache; \
	for pipver in $$pipvers; do \
		printf '%s\n' "$$GET_PIP_STANDIN" > $(ANSIBLE_TEST_HOME)/.ansible/test/cache/get_pip_$${pipver//./_}.py; \
	done; \
	echo ">>> ansible-test sanity: ansible-core $$($$py -c 'import ansible.release as r; print(r.__version__)')," \
		"controller $$($$py -V)"; \
	cd $(BUILD_DIR)/sanity/$*/ansible_collections/$(NAMESPACE)/$(NAME); \
	export HOME=$(ANSIBLE_TEST_HOME) PATH=$(VENV_DIR)/$*/bin:$(PY_LINKS):$$PATH; \
	sanity="ansible-test sanity $(SANITY_PYTHON_$*) $(addprefix --skip-test ,$(SANITY_SKIP)) $(SANITY_ARGS)"; \
	ps_modules=$$(ls plugins/modules/*.ps1 2>/dev/null || true); \
	if [ -z "$$ps_modules" ] || command -v pwsh >/dev/null; then \
		$$sanity; \
	else \
		echo ">>> pwsh not found: validate-modules checks the PowerShell modules' docs, not their argument specs:" $$ps_modules; \
		rc=0; \
		$$sanity --skip-test validate-modules || rc=$$?; \
		$$sanity --test validate-modules $$(printf -- '--exclude %s ' $$ps_modules) || rc=$$?; \
		exit $$rc; \
	fi

# ---------------------------------------------------------------------------
# Lint
# ---------------------------------------------------------------------------
# ansible-lint (configured in .ansible-lint: production profile, offline) lints
# the working tree; tunnelwall.cloudflared resolves from the copy just built
# from that tree in .build/collections, never from Galaxy or ~/.ansible.
# Unlike TEST_ENV, the sys.path scan stays on (ansible-lint wants it to find
# its own venv's collections) and the venv's bin/ is put on PATH, as
# ansible-lint expects to find its sibling tools there.
# ANSIBLE_LINT_ARGS=--strict also fails on warnings.
ANSIBLE_LINT_ARGS ?=
LINT_ENV := PATH=$(VENV_DIR)/latest/bin:$$PATH \
	ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_DIR) \
	ANSIBLE_HOME=$(BUILD_DIR)/ansible-home

.PHONY: lint
lint: venv-latest collection
	cd $(ROOT) && $(LINT_ENV) ansible-lint $(ANSIBLE_LINT_ARGS)
	cd $(ROOT) && $(VENV_DIR)/latest/bin/antsibull-changelog lint
	cd $(ROOT) && $(VENV_DIR)/latest/bin/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

# ---------------------------------------------------------------------------
# pytest
# ---------------------------------------------------------------------------
# $(call run_pytest,VENV,DIRS): pytest over those of DIRS that exist (or only the tests/... paths PYTEST_ARGS names), against the
# installed collection, with the VENV's selection (PYTEST_SELECT_VENV, above). pytest exits 5 when it collects no test; that is only
# accepted while DIRS hold no test files at all (the suites are still being
# written), never when test files exist but nothing was collected.
define run_pytest
	@cd $(ROOT); \
	dirs=$$(for d in $(2); do [ -d "$$d" ] && echo "$$d"; done || true); \
	files=$$([ -n "$$dirs" ] && find $$dirs -name 'test_*.py' -o -name '*_test.py' | head -n 1 || true); \
	named=$$(for a in $(PYTEST_ARGS); do case "$$a" in (tests/*) echo "$$a";; esac; done); \
	if [ -n "$$named" ]; then dirs=; files=$$named; fi; \
	echo ">>> pytest in .venv/$(1): ansible-core $$($(VENV_DIR)/$(1)/bin/python -c 'import ansible.release as r; print(r.__version__)')"; \
	if [ -z "$$files" ]; then echo "no test files in $(2) yet: nothing to run"; exit 0; fi; \
	PATH=$(VENV_DIR)/$(1)/bin:$$PATH $(TEST_ENV) $(VENV_DIR)/$(1)/bin/pytest $(PYTEST_SELECT_$(1)) $(PYTEST_ARGS) $$dirs
endef

.PHONY: unit integration $(addprefix pytest-,$(VENVS)) $(addprefix unit-,$(VENVS)) $(addprefix integration-,$(VENVS))
unit: $(addprefix unit-,$(VENVS))
integration: $(addprefix integration-,$(VENVS))
$(addprefix unit-,$(VENVS)): unit-%: venv-% collection
	$(call run_pytest,$*,tests/unit)
$(addprefix integration-,$(VENVS)): integration-%: venv-% collection debian-packages
	$(call run_pytest,$*,tests/integration)
# Unit and integration tests in one pytest run per venv (what `make test` uses).
$(addprefix pytest-,$(VENVS)): pytest-%: venv-% collection debian-packages
	$(call run_pytest,$*,tests/unit tests/integration)

# The lab (tests/lab) runs managed hosts with real firewalld and ufw in network
# namespaces: it needs these Debian packages and root. Install only what is
# missing. A policy-rc.d that forbids service starts is kept in place during the
# install, so that installing firewalld or ufw never starts them on this machine
# (its own firewall must never change); one we put there is removed afterwards.
DEBIAN_PACKAGES := $(shell grep -v '^\s*\(#\|$$\)' tests/lab/requirements-debian.txt 2>/dev/null)
.PHONY: debian-packages
debian-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "the lab needs root and these Debian packages: $$missing" >&2; exit 1; fi; \
	echo ">>> apt-get install $$missing"; \
	guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; guard=1; fi; \
	rc=0; { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; } || rc=$$?; \
	if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	exit $$rc

# ---------------------------------------------------------------------------
# Everything, in CI order. Fails fast; pytest with the latest venv runs last so
# the last line printed is pytest's summary.
# ---------------------------------------------------------------------------
.PHONY: test
test: venvs collection sanity lint packaging pytest-core219 molecule pytest-latest

# molecule (latest venv) from the collection's root, which is how it finds extensions/molecule; the role comes
# from the installed collection. Its working files go to .build/molecule (ANSIBLE_HOME), and the lab it creates
# uses the same namespaces as the tests' lab, so it runs between the pytest runs, never beside them.
.PHONY: molecule
molecule: venv-latest collection debian-packages
	cd $(ROOT) && PATH=$(VENV_DIR)/latest/bin:$$PATH $(TEST_ENV) ANSIBLE_HOME=$(BUILD_DIR)/molecule \
		ANSIBLE_REMOTE_TMP=$(BUILD_DIR)/molecule/remote-tmp ANSIBLE_NOCOLOR=1 NO_COLOR=1 \
		molecule test --all

# ---------------------------------------------------------------------------
# Demo and bench
# ---------------------------------------------------------------------------
.PHONY: demo demo-plan demo-lab bench
demo: venv-latest collection
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) demo-lab; else \
		echo ">>> not root: the lab (hosts with real firewalls) needs root - showing the plan only"; \
		$(MAKE) demo-plan; fi

# The plan only: asks for the catalog fallback so that it shows a plan even offline; the lookup says loudly when
# it uses it (source=catalog).
demo-plan: venv-latest collection
	cd $(ROOT) && PATH=$(VENV_DIR)/latest/bin:$$PATH $(TEST_ENV) ANSIBLE_LOCALHOST_WARNING=False \
		ansible-playbook tunnelwall.cloudflared.plan -e tunnelwall_edge_on_dns_failure=catalog

# The main job, as root: a lab with two firewalld and two ufw hosts, UDP 7844 blocked for ufw1, the site playbook
# with default deny against it, the fleet report. The lab goes down afterwards unless KEEP_LAB=1.
DEMO_LAB := $(BUILD_DIR)/demo-lab
DEMO_REPORT := $(BUILD_DIR)/demo-report
demo-lab: venv-latest collection debian-packages
	cd $(ROOT) && export PATH=$(VENV_DIR)/latest/bin:$$PATH $(TEST_ENV) ANSIBLE_NOCOLOR=1; \
	lab() { python -m tests.lab --dir $(DEMO_LAB) "$$@"; }; \
	[ "$(KEEP_LAB)" = 1 ] || trap 'lab down >/dev/null' EXIT; \
	lab up --replace --hosts firewalld:2,ufw:2 && lab fault udp7844 drop ufw1 && \
	echo ">>> UDP 7844 (QUIC) is blocked for ufw1 only; running tunnelwall.cloudflared.site" && \
	ansible-playbook tunnelwall.cloudflared.site -i $(DEMO_LAB)/inventory.yml \
		-e egress_firewall_default_deny=true -e '{"egress_firewall_probe_ca_path": "{{ tunnelwall_lab_ca }}"}' \
		-e tunnelwall_report_dir=$(DEMO_REPORT) | tail -n 12 && \
	echo && sed -n '/^\*\*/p; /^| Host/,/^$$/p' $(DEMO_REPORT)/tunnelwall-fleet-report.md && \
	echo ">>> report: $(DEMO_REPORT)/tunnelwall-fleet-report.html (.md, .json)" && \
	if [ "$(KEEP_LAB)" = 1 ]; then echo ">>> lab kept up: python -m tests.lab --dir $(DEMO_LAB) down"; fi

# The bench venv's "ansible" package carries community.general etc. in its
# site-packages, so here the sys.path scan stays on; the collection under test
# still comes only from .build/collections (nothing else provides it).
bench: venv-bench collection
	cd $(ROOT) && PATH=$(VENV_DIR)/bench/bin:$$PATH \
		ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_DIR) ANSIBLE_HOME=$(BUILD_DIR)/ansible-home \
		PYTHONPATH=$(COLLECTIONS_DIR) TUNNELWALL_COLLECTION_DIR=$(COLLECTION_DIR) \
		$(VENV_DIR)/bench/bin/python tests/bench/run_all.py

include mk/packaging.mk

# ---------------------------------------------------------------------------
# Housekeeping
# ---------------------------------------------------------------------------
.PHONY: clean distclean pythons help FORCE
clean:
	# A lab left up (by hand, make demo KEEP_LAB=1, an interrupted bench) lives under .build: take it down first.
	for dir in $(BUILD_DIR)/lab $(DEMO_LAB) $(BUILD_DIR)/bench-lab; do \
		if [ -e $$dir/state.json ] && [ -x $(VENV_DIR)/latest/bin/python ]; then \
			$(VENV_DIR)/latest/bin/python -m tests.lab --dir $$dir down; fi; done
	rm -rf $(BUILD_DIR)
distclean: clean
	rm -rf $(VENV_DIR)
# Show which interpreters the venvs would be (re)built with.
pythons:
	@$(foreach v,$(ALL_VENVS),echo "$(v): $(or $(PYTHON_$(v)),$(call find_python,$(word 1,$(PY_MINORS_$(v))),$(word 2,$(PY_MINORS_$(v)))),NONE FOUND)";)
help:
	@sed -n 's/^#   make /make /p' $(MAKEFILE_LIST)
FORCE:
