# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host's firewall allows now, by purpose (the allow-list the role applied, read back), and its drift.

``{purpose: [destination, ...]}`` - addresses or CIDR blocks as the firewall stores them - from each backend's own
objects of one NAME: ufw's rules tagged NAME:PURPOSE, firewalld's permanent ipsets NAME-PURPOSE[-PROTOPORT]-v4|v6,
nftables' sets PURPOSE_PROTO_PORT_v4|v6 of table inet NAME. Pure functions of what was read; the module reads.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import re
from collections.abc import Mapping

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import ufw_rules

NFT_SET = re.compile(r'^(?P<purpose>[a-z][a-z0-9_]*?)_(tcp|udp)_[0-9]{1,5}_v[46]$')


def _add(found, purpose, destination):
    found.setdefault(purpose, set()).add(str(destination))


def _sorted(found):
    return dict((purpose, sorted(values)) for purpose, values in sorted(found.items()))


def from_ufw(texts, name):
    """``texts``: {family: user.rules or user6.rules text}; the destinations of the outgoing allow rules of NAME."""
    found = {}
    for family, text in texts.items():
        if text is None:
            continue
        for rule in ufw_rules.owned_rules(text, family, name):
            if rule.protocol is None or rule.source_port is not None:
                continue  # not an allow-to-destination rule (host services such as DHCP have a source port)
            purpose = rule.comment.split(':', 1)[1] if ':' in rule.comment else rule.comment
            _add(found, purpose, rule.destination)
    return _sorted(found)


def from_firewalld(ipsets, name):
    """``ipsets``: {ipset name: {'entries': [...]}} of the permanent configuration (Firewalld.read)."""
    pattern = re.compile(r'^%s-(?P<purpose>[a-z][a-z0-9_]*?)(-(tcp|udp)[0-9]{1,5})?-v[46]$' % re.escape(name))
    found = {}
    for ipset, settings in ipsets.items():
        match = pattern.match(ipset)
        if match:
            for entry in settings.get('entries') or []:
                _add(found, match.group('purpose'), entry)
    return _sorted(found)


def _nft_elements(elements):
    for element in elements or []:
        if isinstance(element, dict) and 'prefix' in element:
            yield '%s/%s' % (element['prefix']['addr'], element['prefix']['len'])
        elif isinstance(element, dict) and 'range' in element:
            yield '%s-%s' % tuple(element['range'])
        elif isinstance(element, dict) and 'elem' in element:
            yield from _nft_elements([element['elem'].get('val')])
        elif element is not None:
            yield str(element)


def from_nftables(listing):
    """``listing``: the JSON of ``nft -j list table inet NAME`` (text)."""
    found = {}
    for item in json.loads(listing).get('nftables', []):
        rule_set = item.get('set') if isinstance(item, dict) else None
        match = NFT_SET.match(rule_set.get('name', '')) if rule_set else None
        if match:
            for value in _nft_elements(rule_set.get('elem')):
                _add(found, match.group('purpose'), value)
    return _sorted(found)


# Drift compares the plan's own purposes; `extra` also holds the user's static extra_allow, which no plan knows.
DRIFT_PURPOSES = ('tunnel', 'api', 'update')
# cloudflared's origins are resolved on the host (origins.collect), not in the plan: compared when they are given.
ORIGIN_PURPOSE = 'origin'


def _blocks(destinations):
    """Networks of addresses, CIDR blocks and ``first-last`` ranges (nftables lists a set's unaligned runs so)."""
    blocks = set()
    for text in destinations or []:
        text = str(text).strip()
        try:
            if '-' in text:
                first, last = (ipaddress.ip_address(part.strip()) for part in text.split('-', 1))
                blocks.update(ipaddress.summarize_address_range(first, last))
            else:
                blocks.add(ipaddress.ip_network(text, strict=False))
        except (ValueError, TypeError):
            continue  # anything else this cannot compare: left out
    return blocks


def _covered(block, blocks):
    return any(block.version == other.version and block.subnet_of(other) for other in blocks)


def _rule_blocks(rules, wanted):
    for rule in rules or []:
        if isinstance(rule, Mapping):
            wanted.setdefault(rule.get('purpose'), set()).update(_blocks((rule.get('ipv4') or []) + (rule.get('ipv6') or [])))
    return wanted


def plan_drift(applied, plan, origins=None):
    """How the allow-list a host's firewall holds (``applied``, egress_firewall_info's) differs from a fresh plan.

    ``{new, gone, purposes, text}``: ``new`` counts the plan's blocks the firewall does not allow (the edge moved
    there: an outage under default deny), ``gone`` the allowed blocks the plan no longer has (stale), for the
    purposes the firewall holds at all (a purpose the role was told to leave out is not drift). None when there is
    nothing to compare (no allow-list read, or none applied).

    ``origins``: the origin rules (the plan's rule shape, purpose ``origin``) resolved afresh on the host from the
    same sources the firewall modules read (origins.collect); with them purpose ``origin`` is compared too, whether
    the firewall holds origins yet or not (a new ingress rule is ``new``). None: origins are not compared.
    """
    if not isinstance(applied, Mapping) or not isinstance(plan, Mapping) or not applied:
        return None
    wanted = _rule_blocks(plan.get('rules'), {})
    wanted.pop(ORIGIN_PURPOSE, None)
    purposes_compared = [p for p in DRIFT_PURPOSES if p in applied]
    if origins is not None:
        wanted[ORIGIN_PURPOSE] = _rule_blocks(origins, {}).get(ORIGIN_PURPOSE, set())
        purposes_compared.append(ORIGIN_PURPOSE)
    new = gone = 0
    purposes = []
    for purpose in purposes_compared:
        have, want = _blocks(applied.get(purpose)), wanted.get(purpose, set())
        missing = sum(1 for block in want if not _covered(block, have))
        stale = sum(1 for block in have if not _covered(block, want))
        if missing or stale:
            purposes.append(purpose)
        new, gone = new + missing, gone + stale
    return {'new': new, 'gone': gone, 'purposes': purposes, 'text': u'+%d/\u2212%d' % (new, gone)}


# One shape for what a run changed, on every backend: module results `added` and `removed`.
RULE_KEYS = ('purpose', 'family', 'protocol', 'port', 'destination')


def _rule_key(rule):
    return tuple('' if rule.get(key) is None else str(rule.get(key)) for key in RULE_KEYS)


def rule_changes(before, after):
    """``(added, removed)``: the rules in ``after`` and not ``before``, and the other way round, sorted.

    A rule is ``{purpose, family, protocol, port, destination}`` (family ``ipv4``/``ipv6``, port an int or None, the
    destination an address or CIDR block as the firewall stores it): each backend lists its allow rules so before and
    after a run, and every firewall module returns the difference in this one shape.
    """
    before_by_key = dict((_rule_key(rule), dict(rule)) for rule in before)
    after_by_key = dict((_rule_key(rule), dict(rule)) for rule in after)
    added = [after_by_key[key] for key in sorted(set(after_by_key) - set(before_by_key))]
    removed = [before_by_key[key] for key in sorted(set(before_by_key) - set(after_by_key))]
    return added, removed
