# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs every firewall module shares (documented in doc_fragments/egress_rules.py).

AnsibleModule checks only types here; egress_request.build gives every option its one meaning and its range checks.
``verify``'s options are probe_run.VERIFY_SPEC's, checked in egress_module.prepare.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_contract import PROTOCOLS

HOST_SERVICES = dict(egress_request.HOST_SERVICES)

RULES_SPEC = dict(type='list', elements='dict', options=dict(
    purpose=dict(type='str', required=True),
    protocol=dict(type='str', required=True, choices=list(PROTOCOLS)),
    port=dict(type='int', required=True),
    ipv4=dict(type='list', elements='str', default=[]),
    ipv6=dict(type='list', elements='str', default=[]),
))

EXTRA_ALLOW_SPEC = dict(type='list', elements='dict', default=[], options=dict(
    protocol=dict(type='str', required=True, choices=list(PROTOCOLS)),
    port=dict(type='int', required=True),
    destinations=dict(type='list', elements='str', required=True),
))

# The transaction: verification in the same module run, the dead-man revert and the host-wide lock.
TRANSACTION_SPEC = dict(
    name=dict(type='str', default='tunnelwall'),
    default_deny=dict(type='bool', default=False),
    allow_dns=dict(type='bool', default=egress_request.ALLOW_DNS),
    dns_servers=dict(type='list', elements='str'),
    # The host's own plumbing under a default deny, with the defaults of egress_request, which gives them their meaning.
    allow_dhcp=dict(type='bool', default=HOST_SERVICES['allow_dhcp']),
    allow_mld=dict(type='bool', default=HOST_SERVICES['allow_mld']),
    allow_metadata=dict(type='bool', default=HOST_SERVICES['allow_metadata']),
    resolv_conf=dict(type='path', default='/etc/resolv.conf'),
    # Only its type here: egress_module.prepare checks its options (VERIFY_SPEC's), once it knows it has a dict.
    # With the options in this spec, AnsibleModule itself raises a TypeError (a traceback, not an error) for a
    # verify that is a number, a boolean or a list of them (ansible-core 2.19 to 2.21: set_fallbacks looks into the
    # value before anything checks it is a dict).
    verify=dict(type='dict'),
    confirm_timeout=dict(type='int', default=egress_request.CONFIRM_TIMEOUT),
    lock_timeout=dict(type='int', default=egress_request.LOCK_TIMEOUT),
    # cloudflared's origins (origins.py; egress_request.build checks them, egress_module reads and resolves them).
    origins=dict(type='list', elements='dict', default=[], options=dict(
        host=dict(type='str', required=True),
        port=dict(type='int', required=True),
        protocol=dict(type='str', default='tcp', choices=list(PROTOCOLS)),
    )),
    private_networks=dict(type='list', elements='dict', default=[], options=dict(
        network=dict(type='str', required=True),
        ports=dict(type='list', elements='int', required=True),
        protocol=dict(type='str', default='tcp', choices=list(PROTOCOLS)),
    )),
    cloudflared_config=dict(type='str', default='auto'),
)

# Without rules a present state would silently remove every allow rule: ask for them.
REQUIRED_IF = [('state', 'present', ('rules',))]
