# The venvs under .venv/, each rebuilt from scratch when what it is built from changes (see the .spec rule).
#   core219  the oldest ansible-core supported (meta/runtime.yml: >=2.19.0), the last to run on Python 3.11
#   latest   the newest ansible-core on the newest Python found
#   bench      PyPI's "ansible" package (ansible-core plus community.general and friends), for make bench
#   packaging  the docs, Galaxy import and EE tools (mk/packaging.mk): galaxy-importer pins its own ansible-core
#              and ansible-lint, which must not disturb the test venvs
VENVS := core219 latest
ALL_VENVS := $(VENVS) bench packaging
PY_MINORS_core219 := 11 11
PY_MINORS_latest := 12 99
PY_MINORS_bench := 12 99
PY_MINORS_packaging := 12 99
PIP_SPEC_core219 := -r requirements.txt -r requirements-dev.txt ansible-core~=2.19.0
PIP_SPEC_latest := -r requirements.txt -r requirements-dev.txt ansible-core
PIP_SPEC_bench := -r requirements.txt ansible aioquic trustme cryptography
PIP_SPEC_packaging := -r requirements.txt -r requirements-packaging.txt
# What each venv is rebuilt after, and the packages it shows when built.
REQS_core219 = requirements.txt requirements-dev.txt
REQS_latest = $(REQS_core219)
REQS_bench = $(REQS_core219)
REQS_packaging = requirements.txt requirements-packaging.txt
SHOW_packaging := ansible-core|ansible-lint|antsibull-docs|galaxy.importer|ansible-builder|sphinx
SHOW_OTHERS := ansible|ansible-core|ansible-lint|antsibull-changelog|pytest

# pip's cache lives in .venv/ too, so nothing is written outside the checkout.
PIP_ENV := PIP_CACHE_DIR=$(VENV_DIR)/.cache/pip
# pip warns once per package about the machine-wide extra index that does not exist here; drop that noise.
PIP_FILTER := { grep -v -e 'is ignored: it is neither a file nor a directory' || true; }

# $(call find_python,MIN_MINOR,MAX_MINOR): the newest Python 3.MIN..3.MAX that runs and has venv and ensurepip
# (pyenv shims of unselected versions fail to run and are skipped), or nothing.
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

.PHONY: venvs pythons $(addprefix venv-,$(ALL_VENVS))
venvs: $(addprefix venv-,$(VENVS))
$(addprefix venv-,$(ALL_VENVS)): venv-%: $(VENV_DIR)/%/.stamp ;

# .venv/.NAME.spec records the interpreter choice and pip spec; it is rewritten (so the venv rebuilt) when they
# change or when the venv's interpreter no longer runs.
$(ALL_VENVS:%=$(VENV_DIR)/.%.spec): $(VENV_DIR)/.%.spec: FORCE
	@mkdir -p $(@D)
	@spec='$(PY_MINORS_$*) $(PYTHON_$*) $(PIP_SPEC_$*)'; \
	if [ "$$(cat $@ 2>/dev/null)" != "$$spec" ] || \
		{ [ -e $(VENV_DIR)/$*/.stamp ] && ! $(VENV_DIR)/$*/bin/python -c '' 2>/dev/null; }; then \
		printf '%s\n' "$$spec" > $@; \
	fi

# The stamp is written last, so an interrupted install is redone.
.SECONDEXPANSION:
$(ALL_VENVS:%=$(VENV_DIR)/%/.stamp): $(VENV_DIR)/%/.stamp: $$(REQS_$$*) $(VENV_DIR)/.%.spec
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
	@$(VENV_DIR)/$*/bin/python -m pip list 2>/dev/null | grep -i -E '^($(or $(SHOW_$*),$(SHOW_OTHERS))) ' | sed 's/^/    /'
	@touch $@

pythons:
	@$(foreach v,$(ALL_VENVS),echo "$(v): $(or $(PYTHON_$(v)),$(call find_python,$(word 1,$(PY_MINORS_$(v))),$(word 2,$(PY_MINORS_$(v)))),NONE FOUND)";)
