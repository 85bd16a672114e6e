# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which firewall manages a Linux host's egress: what egress_firewall_info finds and how the role chooses."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

UFW_CONF = '/etc/ufw/ufw.conf'


def choose(found):
    """The backend for ``found`` ({'firewalld': {...}, 'ufw': {...}}), or None.

    A running firewalld wins: it owns the ruleset while it runs, and rules written by ufw beside it would be
    flushed at its next reload. Otherwise an installed ufw - even inactive, so that ufw_egress can say clearly
    that it is inactive instead of the role pretending there is no firewall at all.
    """
    if found['firewalld']['running']:
        return 'firewalld'
    if found['ufw']['installed']:
        return 'ufw'
    return None


def describe(found):
    """One line saying what was found, for the role's error when nothing usable is there."""
    firewalld, ufw = found['firewalld'], found['ufw']
    if firewalld['running']:
        first = 'firewalld %s running' % (firewalld['version'] or '')
    elif firewalld['installed']:
        first = 'firewalld installed but not running (%s)' % firewalld['detail']
    else:
        first = 'firewalld not installed'
    if ufw['installed']:
        second = 'ufw installed, %s' % ('enabled' if ufw['enabled'] else 'inactive')
    else:
        second = 'ufw not installed'
    return '%s; %s' % (first.replace('  ', ' '), second)
