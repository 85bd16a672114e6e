# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs every firewall module shares (documented in doc_fragments/egress_rules.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

RULES_SPEC = dict(type='list', elements='dict', options=dict(
    purpose=dict(type='str', required=True),
    protocol=dict(type='str', required=True, choices=['tcp', 'udp']),
    port=dict(type='int', required=True),
    ipv4=dict(type='list', elements='str', default=[]),
    ipv6=dict(type='list', elements='str', default=[]),
))

EXTRA_ALLOW_SPEC = dict(type='list', elements='dict', default=[], options=dict(
    protocol=dict(type='str', required=True, choices=['tcp', 'udp']),
    port=dict(type='int', required=True),
    destinations=dict(type='list', elements='str', required=True),
))

# Without rules a present state would silently remove every allow rule: ask for them.
REQUIRED_IF = [('state', 'present', ('rules',))]
