# ansible-test sanity (both venvs) and lint (latest venv).
#
#   make sanity-core219 / sanity-latest   SANITY_ARGS='--test pep8 --test pylint' narrows them
#
# ansible-test must run from .../ansible_collections/NAMESPACE/NAME: each venv tests a copy of the files git
# tracks plus the untracked, not-ignored ones, under .build/sanity/VENV/, in its own empty git repository (from the
# checkout's repository ansible-test would see .build/ as ignored and test nothing). ansible-test gets its own
# HOME in .venv/ (its per-test venvs take minutes to build and survive `make clean`).
#
# Skipped: pslint (needs pwsh and PSScriptAnalyzer, not reachable here); without pwsh, validate-modules runs
# without the .ps1 modules (it needs pwsh to read their argument spec; their .py documentation is still checked).
# Pythons: core219 runs everything on its 3.11; latest runs compile/import on every Python from 3.9 found here
# (.venv/pythons links them: pyenv shims of unselected versions refuse to run).
SANITY_SKIP := pslint
SANITY_PYTHON_core219 = --python $(shell $(VENV_DIR)/core219/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
SANITY_PYTHON_latest =
SANITY_ARGS ?=
ANSIBLE_TEST_HOME := $(VENV_DIR)/ansible-test
PY_LINKS := $(VENV_DIR)/pythons
TARGET_PY_MINORS := 9 10 11 12 13 14

.PHONY: sanity $(addprefix sanity-,$(VENVS)) sanity-pythons lint
sanity: $(addprefix sanity-,$(VENVS))

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
		cp $(ROOT)/mk/get_pip_standin.py $(ANSIBLE_TEST_HOME)/.ansible/test/cache/get_pip_$${pipver//./_}.py; \
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

# ansible-lint (.ansible-lint: production profile, offline) on the working tree, tunnelwall.cloudflared resolved
# from .build/collections. Unlike TEST_ENV the sys.path scan stays on and the venv's bin/ is on PATH: ansible-lint
# wants both for its own tools and collections.
ANSIBLE_LINT_ARGS ?=
LINT_ENV := PATH=$(VENV_DIR)/latest/bin:$$PATH \
	ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_DIR) \
	ANSIBLE_HOME=$(BUILD_DIR)/ansible-home

lint: venv-latest collection
	cd $(ROOT) && $(LINT_ENV) ansible-lint $(ANSIBLE_LINT_ARGS)
	cd $(ROOT) && $(VENV_DIR)/latest/bin/antsibull-changelog lint
	cd $(ROOT) && $(VENV_DIR)/latest/bin/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
