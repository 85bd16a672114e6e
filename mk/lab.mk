# What uses the lab (tests/lab: hosts with real firewalls in network namespaces; root): its Debian packages,
# molecule, the demo and the benchmarks.
#
#   make demo-plan    the egress plan only (catalog fallback, so it works offline)
#   make demo-lab     root: a lab with 2 firewalld and 2 ufw hosts, QUIC blocked for ufw1, site playbook, report

# Installs only the missing packages, with a policy-rc.d in place so that installing firewalld or ufw never starts
# them on this machine (its own firewall must never change). Without root it only says what the lab tests (which
# then skip) would need.
DEBIAN_PACKAGES := $(shell grep -v '^\s*\(#\|$$\)' tests/lab/requirements-debian.txt 2>/dev/null)
.PHONY: debian-packages molecule demo demo-plan demo-lab bench lab-down
debian-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo ">>> not root: the lab tests will be skipped (the lab needs root and:" $$missing")"; exit 0; fi; \
	echo ">>> apt-get install $$missing"; \
	guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; guard=1; fi; \
	rc=0; { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; } || rc=$$?; \
	if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	exit $$rc

# From the collection's root (molecule finds extensions/molecule there), the role from the installed collection,
# working files in .build/molecule. Its lab uses the tests' namespaces: never beside a pytest run.
molecule: venv-latest collection debian-packages
	cd $(ROOT) && PATH=$(VENV_DIR)/latest/bin:$$PATH $(TEST_ENV) ANSIBLE_HOME=$(BUILD_DIR)/molecule \
		ANSIBLE_REMOTE_TMP=$(BUILD_DIR)/molecule/remote-tmp ANSIBLE_NOCOLOR=1 NO_COLOR=1 \
		molecule test --all

demo: venv-latest collection
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) demo-lab; else \
		echo ">>> not root: the lab (hosts with real firewalls) needs root - showing the plan only"; \
		$(MAKE) demo-plan; fi

demo-plan: venv-latest collection
	cd $(ROOT) && PATH=$(VENV_DIR)/latest/bin:$$PATH $(TEST_ENV) ANSIBLE_LOCALHOST_WARNING=False \
		ansible-playbook tunnelwall.cloudflared.plan -e tunnelwall_edge_on_dns_failure=catalog

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

# The bench venv's "ansible" carries community.general in site-packages, so the sys.path scan stays on; the
# collection under test still comes only from .build/collections.
bench: venv-bench collection
	cd $(ROOT) && PATH=$(VENV_DIR)/bench/bin:$$PATH \
		ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_DIR) ANSIBLE_HOME=$(BUILD_DIR)/ansible-home \
		PYTHONPATH=$(COLLECTIONS_DIR) TUNNELWALL_COLLECTION_DIR=$(COLLECTION_DIR) \
		$(VENV_DIR)/bench/bin/python tests/bench/run_all.py

# A lab left up under .build (by hand, make demo KEEP_LAB=1, an interrupted bench) goes down before make clean.
lab-down:
	@for dir in $(BUILD_DIR)/lab $(DEMO_LAB) $(BUILD_DIR)/bench-lab; do \
		if [ -e $$dir/state.json ] && [ -x $(VENV_DIR)/latest/bin/python ]; then \
			$(VENV_DIR)/latest/bin/python -m tests.lab --dir $$dir down; fi; done
