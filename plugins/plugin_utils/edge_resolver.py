# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Concurrent DNS discovery of the tunnel edge, the way cloudflared does it.

Every query of the first round (the SRV names, and A/AAAA of every host name
known in advance) is in flight at once, so a normal lookup costs one round
trip. A SRV target that was not known in advance is resolved as soon as its
SRV answer arrives: at most a second round trip. Failures are values, not
exceptions, so the caller sees every failed name at once.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import ssl

from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import edge_names

# dnspython is imported when the first query is made (_dnspython()), not when the lookup is loaded: a plan
# served from the cache, option errors and ansible-doc never pay for it. Whether it is installed is
# known without importing it; the lookup tells the user to install it before it gets here.
HAS_DNSPYTHON = importlib.util.find_spec('dns') is not None
dns = None  # pylint: disable=invalid-name


def _dnspython():
    """Import the parts of dnspython the resolver uses, once; returns the ``dns`` package.

    DNS-over-QUIC is switched off first: dns.asyncresolver imports
    dns.asyncquery, which imports aioquic whenever it is installed (0.15 s
    measured here) although the lookup never speaks DoQ.
    """
    global dns  # pylint: disable=global-statement
    if dns is None:
        try:
            import dns._features as features
            features.force('doq', False)
        except (ImportError, AttributeError):  # dnspython before 2.5 has no feature switches and no DoQ import
            pass
        import dns.asyncquery
        import dns.asyncresolver
        import dns.exception
        import dns.message
        import dns.name
        import dns.rcode
        import dns.rdatatype
        import dns.resolver
    return dns


ADDRESS_TYPES = {'ipv4': 'A', 'ipv6': 'AAAA'}


@dataclasses.dataclass(frozen=True)
class Answer:
    """A successful answer: sorted records and the smallest TTL."""

    name: str
    rdtype: str
    records: tuple
    ttl: int
    resolver: str


@dataclasses.dataclass(frozen=True)
class Failure:
    """A query that gave no usable answer, and why."""

    name: str
    rdtype: str
    kind: str
    detail: str
    resolver: str

    def __str__(self):
        return '%s %s via %s: %s (%s)' % (self.rdtype, self.name, self.resolver, self.kind, self.detail)


@dataclasses.dataclass(frozen=True)
class SrvTarget:
    priority: int
    weight: int
    port: int
    target: str


def _records(rrset):
    if rrset.rdtype == dns.rdatatype.SRV:
        return tuple(sorted(
            (SrvTarget(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True).lower())
             for r in rrset),
            key=lambda t: (t.priority, -t.weight, t.target, t.port)))
    return tuple(sorted({r.address for r in rrset}, key=ipaddress.ip_address))


def srv_problem(records):
    """Why a SRV answer cannot go into a plan (a port no firewall rule can name, a target that is no host name).

    cloudflared dials the port of the answer: port 0 (RFC 2782's "service not
    available") or a target with binary labels is a broken or spoofed answer
    that every module would refuse; naming it here says which name and which
    resolver gave it. None when the answer is fine.
    """
    for target in records:
        if not 1 <= target.port <= 65535:
            return 'target %s has port %d; expected 1 to 65535' % (target.target, target.port)
        if not edge_names.is_hostname(target.target):
            return 'target %r is not a host name' % target.target
    return None


def _describe(nameservers, port):
    def one(ns):
        """A nameserver as HOST:PORT, an IPv6 address in brackets."""
        host = '[%s]' % ns if ':' in ns else ns
        return '%s:%d' % (host, port)
    return ', '.join(one(str(ns)) for ns in nameservers) or 'no nameserver'


def _failure(exc, lifetime):
    """``(kind, detail)`` of a failed query, short enough for one line per name."""
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return 'NXDOMAIN', 'the name does not exist'
    if isinstance(exc, dns.resolver.NoAnswer):
        return 'no answer', 'the name has no record of this type'
    if isinstance(exc, dns.exception.Timeout):
        return 'timeout', 'no answer within %gs' % lifetime
    if isinstance(exc, dns.resolver.NoNameservers):
        # Every nameserver answered with an error rcode: report the rcodes,
        # which is what users grep for.
        rcodes = sorted({str(err[3]) for err in exc.kwargs.get('errors', ()) if isinstance(err[3], str)})
        return ', '.join(rcodes) or 'SERVFAIL', 'every nameserver answered with an error'
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return 'TLS error', str(exc)
    if isinstance(exc, OSError):
        return 'network error', str(exc)
    return 'error', str(exc) or type(exc).__name__


class NoResolverConfigured(Exception):
    """No nameserver was given and the controller has no /etc/resolv.conf."""


class EdgeResolver:
    """Sends the queries for one lookup, with the caller's resolver settings."""

    def __init__(self, options):
        self.options = options
        _dnspython()
        try:
            self._resolver = dns.asyncresolver.Resolver(configure=not options.nameservers)
        except dns.resolver.NoResolverConfiguration as exc:
            raise NoResolverConfigured('no nameservers given and none configured on the controller: %s' % exc)
        if options.nameservers:
            self._resolver.nameservers = list(options.nameservers)
            self._resolver.port = options.port
        self._resolver.timeout = options.timeout
        self._resolver.lifetime = options.lifetime
        self._resolver.cache = None
        self.description = _describe(self._resolver.nameservers, self._resolver.port)
        self.dot_description = 'DNS-over-TLS %s (%s)' % (
            _describe([options.dot_server], options.dot_port), options.dot_server_name)

    async def query(self, name, rdtype):
        """The Answer to ``name``/``rdtype`` from this resolver, or a Failure saying why not (no exception escapes)."""
        try:
            answer = await self._resolver.resolve(
                dns.name.from_text(name), rdtype, tcp=self.options.tcp, search=False)
        except Exception as exc:  # every failure becomes a finding, see the module docstring
            return Failure(name, rdtype, *_failure(exc, self.options.lifetime), resolver=self.description)
        # The smallest TTL along the CNAME chain: a CNAME that expires first can point elsewhere.
        return self._answer(name, rdtype, answer.rrset, answer.chaining_result.minimum_ttl, self.description)

    @staticmethod
    def _answer(name, rdtype, rrset, ttl, description):
        records = _records(rrset)
        problem = srv_problem(records) if rdtype == 'SRV' else None
        if problem:
            return Failure(name, rdtype, 'bad answer', problem, description)
        return Answer(name, rdtype, records, ttl, description)

    async def query_over_tls(self, name, rdtype):
        """cloudflared's fallback for the SRV query when the system resolver fails."""
        opts = self.options
        try:
            response = await dns.asyncquery.tls(
                dns.message.make_query(name, rdtype), opts.dot_server, timeout=opts.lifetime,
                port=opts.dot_port, server_hostname=opts.dot_server_name, verify=opts.dot_ca_path or True)
        except Exception as exc:  # a finding, like query()
            return Failure(name, rdtype, *_failure(exc, opts.lifetime), resolver=self.dot_description)
        if response.rcode() != dns.rcode.NOERROR:
            return Failure(name, rdtype, dns.rcode.to_text(response.rcode()), 'answer from the server',
                           self.dot_description)
        chain = response.resolve_chaining()
        if chain.answer is not None:
            return self._answer(name, rdtype, chain.answer, chain.minimum_ttl, self.dot_description)
        return Failure(name, rdtype, 'no answer', 'the answer section has no %s record' % rdtype,
                       self.dot_description)


async def _discover(resolver, srv_names, hostnames, families):
    import asyncio  # pylint: disable=import-outside-toplevel  # 0.03 s: only when a lookup resolves
    results = {}
    address_tasks = {}

    def resolve_addresses(host):
        """Start the address lookups of ``host`` for each family, once per host and type."""
        for family in families:
            key = (host, ADDRESS_TYPES[family])
            if key not in address_tasks:
                address_tasks[key] = asyncio.ensure_future(resolver.query(*key))

    for host in hostnames:
        resolve_addresses(host)

    async def resolve_srv(srv):
        """Look up the SRV record ``srv`` (over TLS too when plain DNS fails and dot_fallback is set) and start the
        address lookups of its targets."""
        result = await resolver.query(srv, 'SRV')
        if isinstance(result, Failure) and resolver.options.dot_fallback:
            result = await resolver.query_over_tls(srv, 'SRV')
        results[(srv, 'SRV')] = result
        if isinstance(result, Answer):
            for target in result.records:
                resolve_addresses(target.target)

    await asyncio.gather(*(resolve_srv(srv) for srv in srv_names))
    # resolve_srv may have added tasks while the others ran; gather them all.
    while len(results) < len(srv_names) + len(address_tasks):
        pending = [key for key in address_tasks if key not in results]
        answers = await asyncio.gather(*(address_tasks[key] for key in pending))
        results.update(zip(pending, answers))
    return results


def discover(options, srv_names, hostnames):
    """Resolve SRV names and host names concurrently.

    Returns the resolver's description and ``{(name, rdtype): Answer | Failure}``
    for every SRV name, every given host name, and every SRV target, in each
    family of ``options``.
    Raises NoResolverConfigured when no nameserver is given and the
    controller has none.
    """
    import asyncio  # pylint: disable=import-outside-toplevel  # 0.03 s: only when a lookup resolves
    resolver = EdgeResolver(options)
    return resolver.description, asyncio.run(_discover(resolver, srv_names, hostnames, options.families))
