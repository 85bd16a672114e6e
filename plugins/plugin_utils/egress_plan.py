# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn DNS answers (or the published catalog) into the egress plan.

The egress plan is the one data structure every part of the collection
consumes; its shape is documented in docs/egress-plan.md. These are pure
functions: same input, same plan, byte for byte, whatever order DNS
answered in.
"""

from __future__ import annotations

import importlib.util

from ansible.errors import AnsibleLookupError
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import cloudflare_catalog, edge_names
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils.edge_resolver import (
    ADDRESS_TYPES, Answer, Failure)

# netaddr (its set code above all) is imported when a plan is built (_netaddr()), not when the lookup is
# loaded; the lookup tells the user to install it before it gets here.
HAS_NETADDR = importlib.util.find_spec('netaddr') is not None


def _netaddr():
    import netaddr  # pylint: disable=import-outside-toplevel
    return netaddr


PLAN_VERSION = egress_contract.PLAN_VERSION


class DnsFailed(AnsibleLookupError):
    """DNS could not give a complete plan; carries every failure."""

    def __init__(self, failures, message):
        super().__init__(message)
        self.failures = failures


def _endpoint(hostname, purpose, port, protocols, server_names, tls_server_names=None):
    # server_names: the one name per protocol the probe sends; tls_server_names: every name cloudflared may send.
    return {
        'hostname': hostname,
        'purpose': purpose,
        'port': port,
        'protocols': list(protocols),
        'server_names': dict(server_names),
        'tls_server_names': dict((p, list(names)) for p, names in (
            tls_server_names or dict((p, [n]) for p, n in server_names.items())).items()),
        'ipv4': [],
        'ipv6': [],
        'ttl': None,
    }


def wanted_endpoints(options, srv_answers=None):
    """Every endpoint of the plan, in the order the first one of a name wins.

    Without ``srv_answers`` (before DNS, or for the catalog) the tunnel is
    the well-known region names on 7844. With them, the SRV targets come
    first with the port their record gives, and the well-known names follow
    on the SRV's port, so that an allow-list survives a change of SRV targets.
    """
    srv_answers = srv_answers or {}
    endpoints = []
    for names in edge_names.name_sets(options.region, options.generation):
        targets = srv_answers[names.srv].records if names.srv in srv_answers else ()
        ports = {t.port for t in targets}
        region_port = ports.pop() if len(ports) == 1 else edge_names.TUNNEL_PORT
        tunnel = [(t.target, t.port) for t in targets] + [(h, region_port) for h in names.region_hostnames]
        for hostname, port in tunnel:
            endpoints.append(_endpoint(hostname, 'tunnel', port, egress_contract.PROTOCOLS, edge_names.TUNNEL_SERVER_NAMES,
                                       edge_names.TUNNEL_TLS_SERVER_NAMES))
        for purpose, hostnames in (('api', names.apis), ('update', names.updates)):
            if purpose in options.purposes:
                for hostname in hostnames:
                    endpoints.append(_endpoint(hostname, purpose, edge_names.HTTPS_PORT, ('tcp',), {'tcp': hostname}))
    for extra in options.extra_hostnames:
        endpoints.append(_endpoint(extra.hostname, 'extra', extra.port, extra.protocols,
                                   {'tcp': extra.hostname} if 'tcp' in extra.protocols else {}))
    return _unique(endpoints)


def _unique(endpoints):
    """One endpoint per host name: generation=both names api.cloudflare.com twice."""
    seen = {}
    for endpoint in endpoints:
        seen.setdefault(endpoint['hostname'], endpoint)
    return list(seen.values())


def srv_names(options):
    """The SRV names cloudflared asks for the tunnel edge of the options' region and generation."""
    return [names.srv for names in edge_names.name_sets(options.region, options.generation)]


def _srv_failures(options, results):
    failures = []
    for srv in srv_names(options):
        result = results[(srv, 'SRV')]
        if isinstance(result, Failure):
            failures.append(result)
        elif len({t.target for t in result.records}) < edge_names.MIN_SRV_TARGETS:
            # cloudflared's own words for this case (edgediscovery/allregions).
            failures.append(Failure(
                srv, 'SRV', 'too few targets',
                'expected at least %d Cloudflare Regions regions, but SRV only returned %d'
                % (edge_names.MIN_SRV_TARGETS, len({t.target for t in result.records})), result.resolver))
    return failures


def _fill_addresses(endpoint, options, results):
    """Copy a host's answers into its endpoint; return the failures that matter.

    With ip_version=both, a name with addresses in one family only is fine
    (github.com has no AAAA): only a name with no address at all, or a query
    that failed rather than answered empty, is a failure.
    """
    failures = []
    empty = []
    ttls = []
    for family in options.families:
        result = results[(endpoint['hostname'], ADDRESS_TYPES[family])]
        if isinstance(result, Answer):
            endpoint[family] = list(result.records)
            ttls.append(result.ttl)
        elif result.kind == 'no answer':
            empty.append(result)
        else:
            failures.append(result)
    if not ttls and not failures:
        failures.extend(empty)
    endpoint['ttl'] = min(ttls) if ttls else None
    return failures


def _sort_endpoints(endpoints):
    return sorted(endpoints, key=lambda e: (edge_names.PURPOSE_ORDER.index(e['purpose']), e['hostname'], e['port']))


def _sort_addresses(addresses):
    return [str(a) for a in sorted(_netaddr().IPAddress(a) for a in addresses)]


def aggregate(addresses, prefix):
    """Addresses of one family -> the fewest CIDR blocks of at least ``prefix`` bits.

    Each address is widened to its covering /prefix block (host bits cleared),
    then adjacent and overlapping blocks are merged.
    """
    blocks = [_netaddr().IPNetwork('%s/%d' % (address, prefix)).cidr for address in addresses]
    return [str(block) for block in _netaddr().cidr_merge(blocks)]


def build_rules(endpoints, options):
    """One rule per (purpose, protocol, port) with aggregated destinations."""
    grouped = {}
    for endpoint in endpoints:
        for protocol in endpoint['protocols']:
            key = (endpoint['purpose'], protocol, endpoint['port'])
            bucket = grouped.setdefault(key, {'ipv4': set(), 'ipv6': set()})
            for family in egress_contract.FAMILIES:
                bucket[family].update(endpoint[family])
    prefixes = {'ipv4': options.prefix_v4, 'ipv6': options.prefix_v6}
    rules = []
    for (purpose, protocol, port) in sorted(grouped, key=lambda k: (
            edge_names.PURPOSE_ORDER.index(k[0]), egress_contract.PROTOCOLS.index(k[1]), k[2])):
        bucket = grouped[(purpose, protocol, port)]
        rule = {'purpose': purpose, 'protocol': protocol, 'port': port}
        for family in egress_contract.FAMILIES:
            rule[family] = aggregate(bucket[family], prefixes[family])
        rules.append(rule)
    return rules


def _trusted_sets(options):
    return {family: _netaddr().IPSet(str(n) for n in networks) for family, networks in options.ranges.items()}


def ownership_violations(endpoints, options, resolver):
    """Addresses of Cloudflare names that lie outside the trusted ranges."""
    trusted = _trusted_sets(options)
    verified = {e.hostname for e in options.extra_hostnames if e.verify_ownership}
    violations = []
    for endpoint in endpoints:
        if endpoint['purpose'] == 'extra' and endpoint['hostname'] not in verified:
            continue
        for family in egress_contract.FAMILIES:
            violations.extend(
                '%s resolved to %s via %s' % (endpoint['hostname'], address, resolver)
                for address in endpoint[family] if _netaddr().IPAddress(address) not in trusted[family])
    return violations


def widened_beyond_trust(rules, options):
    """Blocks that prefix_v4/prefix_v6 widened past the trusted ranges."""
    trusted = _trusted_sets(options)
    return sorted({block for rule in rules for family in egress_contract.FAMILIES for block in rule[family]
                   if not _netaddr().IPSet([block]).issubset(trusted[family])})


def plan_from_dns(options, results, resolved_at):
    """The plan from DNS answers; raises DnsFailed listing every failure.

    Returns ``(plan, ttl)`` where ttl is the smallest TTL of every answer
    used, i.e. how long the plan may be cached.
    """
    failures = _srv_failures(options, results)
    srv_answers = {srv: results[(srv, 'SRV')] for srv in srv_names(options)
                   if isinstance(results[(srv, 'SRV')], Answer)}
    endpoints = wanted_endpoints(options, srv_answers)
    for endpoint in endpoints:
        failures.extend(_fill_addresses(endpoint, options, results))
    if failures:
        raise DnsFailed(failures, 'edge_endpoints: DNS did not give a complete plan:\n  %s'
                        % '\n  '.join(str(f) for f in failures))
    endpoints = _sort_endpoints(endpoints)
    ttl = min([e['ttl'] for e in endpoints] + [results[(s, 'SRV')].ttl for s in srv_names(options)])
    return _plan(options, 'dns', resolved_at, endpoints), ttl


def plan_from_catalog(options, resolved_at):
    """The plan from Cloudflare's published tunnel addresses.

    Only the tunnel has published addresses: api, update and extra host
    names are left out (returned as the second value) rather than guessed.
    """
    endpoints, left_out = [], []
    for endpoint in wanted_endpoints(options):
        published = cloudflare_catalog.PUBLISHED_EDGE.get(endpoint['hostname'])
        if endpoint['purpose'] != 'tunnel' or published is None:
            left_out.append(endpoint['hostname'])
            continue
        for family in options.families:
            endpoint[family] = _sort_addresses(published[family])
        endpoints.append(endpoint)
    plan = _plan(options, 'catalog', resolved_at, _sort_endpoints(endpoints))
    plan['catalog_taken'] = cloudflare_catalog.PUBLISHED_EDGE_TAKEN
    return plan, left_out


def _plan(options, source, resolved_at, endpoints):
    return {
        'version': PLAN_VERSION,
        'region': options.region,
        'generation': options.generation,
        'source': source,
        'resolved_at': resolved_at,
        # The probe asks the same SRV questions from each host.
        'srv_names': srv_names(options),
        # Names cloudflared resolves besides those (for resolvers that filter by name); the probe asks them too.
        'dns_names': edge_names.dns_names(),
        'endpoints': endpoints,
        'rules': build_rules(endpoints, options),
    }
