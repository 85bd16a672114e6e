# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The edge_endpoints lookup's work: resolve, build, guard, or fall back."""

from __future__ import annotations

import datetime

from ansible.errors import AnsibleLookupError
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import (
    cloudflare_catalog, edge_resolver, egress_plan, plan_cache)


def cache_key(options):
    """Changes with every option that changes the plan, and with the plan's format."""
    return plan_cache.cache_key({'plan_version': egress_plan.PLAN_VERSION, 'options': options.cache_key()})


def cached_plan_problem(options, plan):
    """Why a plan read from the cache must not be used; None when it may.

    The cache is a file, and a file can be planted or edited: the plan must be
    one these options would produce (same region, generation and extra host
    names, rules rebuilt from its endpoints), and it passes the same ownership
    guard as a fresh one.
    """
    try:
        if plan.get('version') != egress_plan.PLAN_VERSION or plan.get('source') != 'dns' \
                or (plan.get('region'), plan.get('generation')) != (options.region, options.generation):
            return 'not a DNS plan of region=%s generation=%s' % (options.region, options.generation)
        endpoints = plan['endpoints']
        extras = {(e.hostname, e.port, tuple(e.protocols)) for e in options.extra_hostnames}
        for endpoint in endpoints:
            if endpoint['purpose'] == 'extra':
                if (endpoint['hostname'], endpoint['port'], tuple(endpoint['protocols'])) not in extras:
                    return 'extra host name %s is not in extra_hostnames' % endpoint['hostname']
            elif endpoint['purpose'] not in options.purposes:
                return 'endpoint %s has purpose %r, not one of %s' % (
                    endpoint['hostname'], endpoint['purpose'], ', '.join(options.purposes))
            if not 1 <= endpoint['port'] <= 65535 or isinstance(endpoint['port'], bool):
                return 'endpoint %s has port %r' % (endpoint['hostname'], endpoint['port'])
        if options.verify_ownership:
            violations = egress_plan.ownership_violations(endpoints, options, 'the cache')
            if violations:
                return 'addresses outside %s: %s' % (_trusted_description(options), '; '.join(violations[:5]))
        if plan['rules'] != egress_plan.build_rules(endpoints, options):
            return 'its rules are not the rules of its endpoints'
    except Exception as exc:  # pylint: disable=broad-except  # any malformed entry is simply not used
        return 'not a well-formed plan (%s: %s)' % (type(exc).__name__, exc)
    return None


def _trusted_description(options):
    if options.trusted_ranges:
        return 'trusted_ranges (%s)' % ', '.join(str(n) for n in options.trusted_ranges)
    return "Cloudflare's published ranges (taken %s)" % cloudflare_catalog.CLOUDFLARE_RANGES_TAKEN


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def resolve_plan(options, warn, now=_utc_now):
    """The egress plan for ``options`` and how long it may be cached.

    Raises AnsibleLookupError when DNS fails (unless on_dns_failure=catalog)
    or an address fails the ownership guard; ``warn`` receives the warnings.
    """
    resolved_at = now()
    hostnames = [e['hostname'] for e in egress_plan.wanted_endpoints(options)]
    try:
        resolver, results = edge_resolver.discover(options, egress_plan.srv_names(options), hostnames)
        plan, ttl = egress_plan.plan_from_dns(options, results, resolved_at)
    except (egress_plan.DnsFailed, edge_resolver.NoResolverConfigured) as exc:
        if options.on_dns_failure != 'catalog':
            raise AnsibleLookupError(str(exc)) from exc
        plan, left_out = egress_plan.plan_from_catalog(options, resolved_at)
        warn("edge_endpoints: DNS failed, so this plan is Cloudflare's published list taken %s (source=catalog), "
             'as on_dns_failure=catalog asks. %s' % (plan['catalog_taken'], exc))
        if left_out:
            warn('edge_endpoints: no published addresses exist for %s: left out of the catalog plan'
                 % ', '.join(left_out))
        return plan, None

    if options.verify_ownership:
        violations = egress_plan.ownership_violations(plan['endpoints'], options, resolver)
        if violations:
            raise AnsibleLookupError(
                'edge_endpoints: addresses outside %s:\n  %s\nA spoofed or hijacked answer? If these addresses '
                'are yours (a lab, a proxy), list their ranges in trusted_ranges.'
                % (_trusted_description(options), '\n  '.join(violations)))
        widened = egress_plan.widened_beyond_trust(plan['rules'], options)
        if widened:
            warn('edge_endpoints: prefix_v4=%d/prefix_v6=%d widen the rules past %s: %s'
                 % (options.prefix_v4, options.prefix_v6, _trusted_description(options), ', '.join(widened)))
    return plan, ttl
