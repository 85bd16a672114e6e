# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which firewall manages a Linux host's egress: what egress_firewall_info finds and how the role chooses."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

UFW_CONF = '/etc/ufw/ufw.conf'


def choose(found):
    """The backend for ``found`` ({'firewalld': {...}, 'ufw': {...}, 'nftables': {...}}), or None.

    A running firewalld wins: it owns the ruleset while it runs, and rules written by ufw or into a table of ours
    beside it would be flushed or outranked at its next reload. Then an enabled ufw, which a user chose to manage
    the host. Then nftables wherever ``nft`` works: the kernel alone, as on minimal installs. Last an installed but
    inactive ufw - only where nft cannot be used - so that ufw_egress can say clearly that it is inactive instead of
    the role pretending there is no firewall at all.
    """
    nftables = found.get('nftables') or {}
    if found['firewalld']['running']:
        return 'firewalld'
    if found['ufw']['installed'] and found['ufw']['enabled']:
        return 'ufw'
    if nftables.get('usable'):
        return 'nftables'
    if found['ufw']['installed']:
        return 'ufw'
    return None


def describe_firewalld(firewalld):
    """firewalld's state in a few words, for the message when no firewall can be written."""
    if firewalld['running']:
        return ('firewalld %s running' % (firewalld['version'] or '')).replace('  ', ' ')
    if firewalld['installed']:
        return 'firewalld installed but not running (%s)' % firewalld['detail']
    return 'firewalld not installed'


def describe_ufw(ufw):
    """ufw's state in a few words."""
    if ufw['installed']:
        return 'ufw installed, %s' % ('enabled' if ufw['enabled'] else 'inactive')
    return 'ufw not installed'


def describe_nftables(nftables):
    """nftables' state in a few words."""
    if nftables.get('usable'):
        return ('nftables %s usable' % (nftables.get('version') or '')).replace('  ', ' ')
    if nftables.get('installed'):
        return 'nft installed but not usable (%s)' % (nftables.get('detail') or 'nft list tables failed')
    return 'nft not installed'


def describe(found):
    """One line saying what was found, for the role's error when nothing usable is there."""
    return '; '.join([describe_firewalld(found['firewalld']), describe_ufw(found['ufw']),
                      describe_nftables(found.get('nftables') or {})])
