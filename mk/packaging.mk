# Packaging: the collection's documentation, the Galaxy import and the AWX execution environment.
# Included by the Makefile; the tools live in their own venv, .venv/packaging (mk/venvs.mk,
# requirements-packaging.txt).
#
#   make packaging      docs-lint, docs-check, galaxy-import and ee, as `make test` runs them (after lint)
#   make docs           render the plugin and role docs into docs/collection/ (RST, GitHub renders it): commit it
#   make docs-check     fail when docs/collection/ is not what `make docs` would write now
#   make docs-lint      antsibull-docs lint-collection-docs: plugin and role docs, schema, markup, references, RST
#   make docs-html      optional, not in `make test`: an HTML site (Sphinx, offline) in .build/docs-html
#   make galaxy-import  galaxy-importer (what Galaxy runs on an upload) on the built tarball, offline
#   make ee             ansible-builder create: the execution environment's build context in .build/ee-context, checked
#   make changelog-preview  optional: the next release's CHANGELOG.rst from the fragments, in .build (nothing is released)

PACKAGING_VENV := $(VENV_DIR)/packaging

# The tools see the installed collection only (TEST_ENV), with this venv's ansible-core first on PATH.
PACKAGING_ENV := PATH=$(PACKAGING_VENV)/bin:$$PATH $(TEST_ENV)

# antsibull-docs with mk/antsibull-docs.cfg: its own default would also log to ~/antsibull.log.
ANTSIBULL_DOCS := antsibull-docs --config-file $(ROOT)/mk/antsibull-docs.cfg

DOCS_DIR := $(ROOT)/docs/collection
EE_FILE := ee/execution-environment.yml
EE_CONTEXT := $(BUILD_DIR)/ee-context
GALAXY_IMPORT_DIR := $(BUILD_DIR)/galaxy-importer

# The tarball `make collection` just built (recipes only: it does not exist when make reads this file).
BUILT_TARBALL = $$(ls $(DIST_DIR)/$(NAMESPACE)-$(NAME)-*.tar.gz)

.PHONY: packaging docs docs-check docs-lint docs-html galaxy-import ee changelog-preview
packaging: docs-lint docs-check galaxy-import ee

# ---------------------------------------------------------------------------
# Documentation
# ---------------------------------------------------------------------------
# $(call render_docs,DIR): every module, plugin and role of the installed collection as RST in DIR (emptied
# first; antsibull-docs wants it writable by its owner only), in antsibull-docs' simplified-rst format: plain
# docutils, no Sphinx roles, links between the files, so GitHub renders it. The collection index becomes
# README.rst, which GitHub shows for the folder. No antsibull-docs version in the files, so that they only change
# when the docs do; --fail-on-error turns a doc that does not parse into a failure rather than an error page.
define render_docs
	@rm -rf $(1) && mkdir -p $(1) && chmod go-w $(1)
	@cd $(ROOT) && $(PACKAGING_ENV) $(ANTSIBULL_DOCS) collection --use-current --squash-hierarchy \
		--output-format simplified-rst --no-add-antsibull-docs-version --fail-on-error \
		--dest-dir $(1) $(NAMESPACE).$(NAME)
	@mv $(1)/index.rst $(1)/README.rst
endef

docs: venv-packaging collection
	$(call render_docs,$(BUILD_DIR)/docs/collection)
	@rm -rf $(DOCS_DIR) && mkdir -p $(dir $(DOCS_DIR)) && cp -r $(BUILD_DIR)/docs/collection $(DOCS_DIR)
	@cd $(ROOT) && echo ">>> docs/collection: $$(ls docs/collection | wc -l) files rendered;" \
		"$$(git status --porcelain --untracked-files=all -- docs/collection | wc -l) differ from git (commit docs/collection/)"

docs-check: venv-packaging collection
	$(call render_docs,$(BUILD_DIR)/docs-check/collection)
	@if ! diff -ru $(DOCS_DIR) $(BUILD_DIR)/docs-check/collection > $(BUILD_DIR)/docs-check/diff; then \
		head -n 60 $(BUILD_DIR)/docs-check/diff; \
		echo "ERROR: docs/collection/ is out of date with the plugin and role docs (full diff: .build/docs-check/diff)." >&2; \
		echo "       Run 'make docs' and commit docs/collection/." >&2; \
		exit 1; \
	fi
	@echo ">>> docs/collection/ is up to date ($$(ls $(DOCS_DIR) | wc -l) files)"

# Lints the working tree's plugin docs (DOCUMENTATION, EXAMPLES, RETURN), the role's argument specs and every
# reference in them (--validate-collection-refs all: M(), O(), P() ... must name something that exists), and
# runs rstcheck on the RST that would be generated from them.
docs-lint: venv-packaging
	cd $(ROOT) && $(PACKAGING_ENV) $(ANTSIBULL_DOCS) lint-collection-docs --plugin-docs --output-format simplified-rst \
		--validate-collection-refs all --disallow-unknown-collection-refs .
	@echo ">>> antsibull-docs lint-collection-docs: no problems"

# The site docs.ansible.com-style (sphinx-ansible-theme), from the same docs in antsibull-docs' Sphinx format.
# Offline, so no intersphinx: references to docs.ansible.com (ansible.builtin modules, common return values) stay
# plain text (mk/docsite/conf.py); every other Sphinx warning fails the build.
docs-html: venv-packaging collection
	@rm -rf $(BUILD_DIR)/docs-html && mkdir -p $(BUILD_DIR)/docs-html/rst && chmod go-w $(BUILD_DIR)/docs-html/rst
	@cp $(ROOT)/mk/docsite/index.rst $(BUILD_DIR)/docs-html/rst/
	cd $(ROOT) && $(PACKAGING_ENV) $(ANTSIBULL_DOCS) collection --use-current --no-add-antsibull-docs-version \
		--fail-on-error --dest-dir $(BUILD_DIR)/docs-html/rst $(NAMESPACE).$(NAME)
	cd $(ROOT) && $(PACKAGING_ENV) sphinx-build -q -b html -c mk/docsite -W --keep-going \
		$(BUILD_DIR)/docs-html/rst $(BUILD_DIR)/docs-html/html
	@echo ">>> open $(BUILD_DIR)/docs-html/html/index.html"

# ---------------------------------------------------------------------------
# Galaxy import
# ---------------------------------------------------------------------------
# galaxy-importer as Galaxy runs it on an upload, configured by mk/galaxy-importer.cfg: ansible-doc and
# ansible-lint, no ansible-test in a container. It works on its own copy of the tarball (in .build/), so it gets
# no ANSIBLE_COLLECTIONS_PATH from us. mk/galaxy_import.py shows the log and what Galaxy would list, and fails on
# an importer error or a module, lookup or role without documentation; GALAXY_IMPORTER_STRICT=1 fails on
# warnings (ansible-lint findings) too.
galaxy-import: venv-packaging collection
	@rm -rf $(GALAXY_IMPORT_DIR) && mkdir -p $(GALAXY_IMPORT_DIR)/tmp $(GALAXY_IMPORT_DIR)/ansible-tmp
	cd $(ROOT) && PATH=$(PACKAGING_VENV)/bin:$$PATH ANSIBLE_HOME=$(GALAXY_IMPORT_DIR)/ansible-home \
		GALAXY_IMPORTER_CONFIG=$(ROOT)/mk/galaxy-importer.cfg \
		GALAXY_IMPORTER_TMP_ROOT_DIR=$(GALAXY_IMPORT_DIR)/tmp \
		GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP=$(GALAXY_IMPORT_DIR)/ansible-tmp \
		$(PACKAGING_VENV)/bin/python mk/galaxy_import.py $(BUILT_TARBALL) $(GALAXY_IMPORT_DIR)

# ---------------------------------------------------------------------------
# AWX execution environment
# ---------------------------------------------------------------------------
# `ansible-builder create` only writes the build context (no container engine, no image pull, nothing
# downloaded); `ansible-builder build` on a machine with podman or docker builds the image (docs/awx.md).
# mk/check_ee.py then checks the Containerfile, that the context carries the tarball just built, and that
# ansible-builder's introspection finds the collection's requirements.txt and bindep.txt through
# meta/execution-environment.yml.
ee: venv-packaging collection
	@rm -rf $(EE_CONTEXT)
	cd $(ROOT) && $(PACKAGING_VENV)/bin/ansible-builder create -f $(EE_FILE) --context $(EE_CONTEXT) \
		--output-filename Containerfile -v 1
	cd $(ROOT) && $(PACKAGING_VENV)/bin/python mk/check_ee.py $(EE_FILE) $(EE_CONTEXT) $(BUILT_TARBALL) $(COLLECTIONS_DIR)

# ---------------------------------------------------------------------------
# Changelog preview
# ---------------------------------------------------------------------------
# `antsibull-changelog release` (galaxy.yml's version, today's date) on a copy of the working tree, so that the
# fragments, changelogs/changelog.yaml and CHANGELOG.rst of the checkout stay as they are: nothing is released.
CHANGELOG_PREVIEW := $(BUILD_DIR)/changelog-preview
changelog-preview: venv-packaging collection
	@rm -rf $(CHANGELOG_PREVIEW) && mkdir -p $(CHANGELOG_PREVIEW)
	@git -C $(ROOT) ls-files -z --cached --others --exclude-standard \
		| tar -C $(ROOT) --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -C $(CHANGELOG_PREVIEW) -xf -
	cd $(CHANGELOG_PREVIEW) && $(PACKAGING_ENV) antsibull-changelog release
	@sed -n '/^v[0-9]/,$$p' $(CHANGELOG_PREVIEW)/CHANGELOG.rst
	@echo ">>> preview: $(CHANGELOG_PREVIEW)/CHANGELOG.rst (not released; the checkout is unchanged)"
