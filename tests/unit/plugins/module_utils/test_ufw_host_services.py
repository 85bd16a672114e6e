# -*- coding: utf-8 -*-
"""ufw_egress's rendering of the host services under a default deny: DHCP, MLD, the metadata service."""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_request, ufw_rules
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.ufw_rules import UfwRule

from tests.unit.plugins.module_utils.test_ufw_rules import EMPTY4, PLAN_RULES

DHCP4 = UfwRule('ipv4', 'udp', 67, '0.0.0.0/0', 'tunnelwall:dhcp', 68)
DHCP6 = UfwRule('ipv6', 'udp', 547, '::/0', 'tunnelwall:dhcp', 546)
META4 = UfwRule('ipv4', 'tcp', 80, '169.254.169.254', 'tunnelwall:metadata')
META6 = UfwRule('ipv6', 'tcp', 80, 'fd00:ec2::254', 'tunnelwall:metadata')


def rendered(**options):
    """The ufw rules of the module's Request for these options (no nameserver: DNS is not the point here)."""
    return ufw_rules.render(egress_request.build(dict({'rules': PLAN_RULES}, **options), 'ufw'), [])


def test_dhcp_blocks_are_what_the_ufw_command_line_writes():
    # `ufw allow out proto udp from any port 68 to any port 67` - any destination: no -d, the client port as --sport.
    assert ufw_rules.render_block(DHCP4) == (
        '### tuple ### allow udp 67 0.0.0.0/0 68 0.0.0.0/0 out comment=%s' % ufw_rules.hex_comment('tunnelwall:dhcp'),
        '-A ufw-user-output -p udp --dport 67 --sport 68 -j ACCEPT')
    assert ufw_rules.render_block(DHCP6)[1] == '-A ufw6-user-output -p udp --dport 547 --sport 546 -j ACCEPT'
    assert ufw_rules.render_block(META4)[1] == '-A ufw-user-output -p tcp -d 169.254.169.254 --dport 80 -j ACCEPT'


UFW_LIBRARY = '/usr/lib/python3/dist-packages/ufw/common.py'


@pytest.mark.skipif(not os.path.exists(UFW_LIBRARY) or not os.path.exists('/usr/bin/python3'), reason='ufw not installed')
def test_the_rule_lines_match_ufws_own_formatter():
    # ufw's own Python code (read only, nothing is run against a firewall) formats the same rules the same way.
    script = ('import builtins, sys; builtins._ = str; sys.path.insert(0, "/usr/lib/python3/dist-packages")\n'
              'import ufw.common as c\n'
              'for a in [("67", "0.0.0.0/0", "68"), ("547", "::/0", "546")]:\n'
              '    r = c.UFWRule("allow", "udp", a[0], a[1], a[2], "::/0" if ":" in a[1] else "0.0.0.0/0", direction="out")\n'
              '    r.set_v6(":" in a[1]); print(r.format_rule())\n')
    lines = subprocess.run(['/usr/bin/python3', '-c', script], capture_output=True, text=True, check=True).stdout.split('\n')
    assert ufw_rules.render_block(DHCP4)[1] == '-A ufw-user-output ' + lines[0]
    assert ufw_rules.render_block(DHCP6)[1] == '-A ufw6-user-output ' + lines[1]


def test_default_deny_wants_dhcp_but_no_metadata_by_default():
    wanted = rendered(default_deny=True)
    assert DHCP4 in wanted and DHCP6 in wanted
    assert not [r for r in wanted if r.comment == 'tunnelwall:metadata']


def test_allow_metadata_adds_both_endpoints_and_allow_dhcp_false_drops_dhcp():
    wanted = rendered(default_deny=True, allow_dhcp=False, allow_metadata=True)
    assert META4 in wanted and META6 in wanted
    assert not [r for r in wanted if r.comment == 'tunnelwall:dhcp']


def test_no_host_service_rule_without_a_default_deny():
    wanted = rendered(allow_dhcp=True, allow_metadata=True)
    assert not [r for r in wanted if r.comment in ('tunnelwall:dhcp', 'tunnelwall:metadata')]


def test_allow_mld_writes_no_ufw_rule():
    # ufw user rules cannot name ICMPv6 types; ufw's before6.rules accept MLD from link-local sources already.
    with_mld = rendered(default_deny=True, allow_mld=True)
    without = rendered(default_deny=True, allow_mld=False)
    assert with_mld == without


def test_dhcp_rules_reconcile_and_read_back_with_their_source_port():
    text, added, removed = ufw_rules.reconcile_file(EMPTY4, 'ipv4', [DHCP4], 'tunnelwall')
    assert added == [DHCP4] and removed == []
    assert ufw_rules.owned_rules(text, 'ipv4', 'tunnelwall') == [DHCP4]
    # A second run finds it present; switching DHCP off removes it and leaves the file as before.
    assert ufw_rules.reconcile_file(text, 'ipv4', [DHCP4], 'tunnelwall')[1:] == ([], [])
    assert ufw_rules.reconcile_file(text, 'ipv4', [], 'tunnelwall') == (EMPTY4, [], [DHCP4])
    assert ufw_rules.applied_rule(DHCP4) == {'purpose': 'dhcp', 'family': 'ipv4', 'protocol': 'udp', 'port': 67,
                                             'destination': '0.0.0.0/0'}
    assert ufw_rules.describe(DHCP4) == 'allow out udp/67 from port 68 to 0.0.0.0/0  # tunnelwall:dhcp'


def test_ufws_own_before6_rules_let_mld_out():
    # What allow_mld's documentation says about ufw, checked against the rules ufw ships (when it is installed).
    shipped = '/usr/share/ufw/iptables/before6.rules'
    if not os.path.exists(shipped):
        pytest.skip('ufw not installed')
    text = open(shipped).read()
    for icmp_type in egress_request.MLD_TYPES:
        assert '-A ufw6-before-output -p icmpv6 --icmpv6-type %d -s fe80::/10 -j ACCEPT' % icmp_type in text
