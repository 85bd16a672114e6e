# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""firewalld_egress as pure functions: validation, the desired objects, parsing firewalld's answers, the change plan.

Nothing here runs a command; firewalld_client.py does, following the steps plan_steps() returns.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import ipaddress
import re
from xml.sax.saxutils import quoteattr, escape

# Names and purposes as every module spells them. They match whole strings (\Z: a trailing newline is refused,
# where $ would let "name\n" through), and their characters are all firewalld allows in policy and ipset names.
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_request import METADATA, NAME_RE, PURPOSE_RE

# firewalld limits a policy name to 18 characters (its longest nftables chain name must fit netfilter's limit);
# the policy is NAME-egress, so NAME may have 11. ipset names must fit the kernel's 31 characters.
POLICY_SUFFIX = '-egress'
MAX_POLICY_NAME = 18
MAX_NAME = MAX_POLICY_NAME - len(POLICY_SUFFIX)
MAX_IPSET_NAME = 31
PROTOCOLS = ('tcp', 'udp')
FAMILIES = {'ipv4': ('inet', '-v4', 4), 'ipv6': ('inet6', '-v6', 6)}
# The default-deny rule sits in the policy's last chain, so every allow rule is evaluated before it.
REJECT_PRIORITY = 32767
# Under default-deny IPv6 still needs neighbour discovery: conntrack does not track it, so the
# "established, related" rule does not let it out, and without it the host loses its IPv6 neighbours.
NDP_TYPES = ('neighbour-advertisement', 'neighbour-solicitation', 'router-solicitation')
DESCRIPTION = 'Managed by tunnelwall.cloudflared.firewalld_egress; changes made here are overwritten.'

# source_port: (port, protocol) of a source-port element; l4: a protocol element's value (a rich rule has one element).
Rule = collections.namedtuple('Rule', 'family destination_kind destination port protocol icmp_type action priority '
                                      'source_port l4', defaults=(None, None))
# DHCP client traffic: firewalld's rich rule takes one element, so it is the client's source port (68, 546), which
# only root can bind, rather than the server port any user could send to; any destination (a renewal is unicast).
DHCP_SOURCE_PORTS = {'ipv4': 68, 'ipv6': 546}
# firewalld 1.3 knows no MLD icmptype (`firewall-cmd --get-icmptypes`; nftables.ICMP_TYPES_FRAGMENTS has none), so
# MLD is allowed as ICMPv6 to multicast destinations: every MLD message goes to a multicast address (ff02::16,
# ff02::2 or the group itself); what else matches (an echo request to a group) does not leave the link either.
MULTICAST_V6 = 'ff00::/8'
ICMPV6 = 'ipv6-icmp'

# The steps of a change plan, one record type per kind. ``kind`` names the firewalld_client method that carries the
# step out (``_step_KIND``), so a step is also the tuple (KIND, arguments...) that method takes.
WriteFile = collections.namedtuple('WriteFile', 'kind path text')            # path relative to /etc/firewalld
RemoveFile = collections.namedtuple('RemoveFile', 'kind path')
Reload = collections.namedtuple('Reload', 'kind')
SetEntries = collections.namedtuple('SetEntries', 'kind layer ipset entries')  # layer: runtime or permanent
ChangeRules = collections.namedtuple('ChangeRules', 'kind layer policy rules')  # kind: add_rules or remove_rules


def write_file(path, text):
    return WriteFile('write_file', path, text)


def remove_file(path):
    return RemoveFile('remove_file', path)


def reload_step():
    return Reload('reload')


def set_entries(layer, ipset, entries):
    return SetEntries('set_entries', layer, ipset, entries)


def add_rules(layer, policy, rules):
    return ChangeRules('add_rules', layer, policy, rules)


def remove_rules(layer, policy, rules):
    return ChangeRules('remove_rules', layer, policy, rules)


def allow_rule(family, destination_kind, destination, port, protocol):
    return Rule(family, destination_kind, destination, port, protocol, None, 'accept', None)


def icmp_rule(family, icmp_type):
    return Rule(family, None, None, None, None, icmp_type, 'accept', None)


def dhcp_rule(family):
    return Rule(family, None, None, None, None, None, 'accept', None, (DHCP_SOURCE_PORTS[family], 'udp'), None)


def mld_rule():
    return Rule('ipv6', 'address', MULTICAST_V6, None, None, None, 'accept', None, None, ICMPV6)


def reject_rule():
    return Rule(None, None, None, None, None, None, 'reject', REJECT_PRIORITY)


def render_rule(rule):
    """A rule in the exact text firewalld prints it back in (``--list-rich-rules``), so rules compare as strings."""
    parts = ['rule']
    if rule.priority is not None:
        parts.append('priority="%d"' % rule.priority)
    if rule.family:
        parts.append('family="%s"' % rule.family)
    if rule.destination_kind:
        parts.append('destination %s="%s"' % (rule.destination_kind, rule.destination))
    if rule.icmp_type:
        parts.append('icmp-type name="%s"' % rule.icmp_type)
    if rule.port is not None:
        parts.append('port port="%d" protocol="%s"' % (rule.port, rule.protocol))
    if rule.source_port:
        parts.append('source-port port="%d" protocol="%s"' % rule.source_port)
    if rule.l4:
        parts.append('protocol value="%s"' % rule.l4)
    parts.append(rule.action)
    return ' '.join(parts)


def rule_xml(rule):
    """The same rule as firewalld stores it in a policy's XML file."""
    attrs = ''
    if rule.family:
        attrs += ' family=%s' % quoteattr(rule.family)
    if rule.priority is not None:
        attrs += ' priority="%d"' % rule.priority
    lines = ['  <rule%s>' % attrs]
    if rule.destination_kind:
        lines.append('    <destination %s=%s/>' % (rule.destination_kind, quoteattr(rule.destination)))
    if rule.icmp_type:
        lines.append('    <icmp-type name=%s/>' % quoteattr(rule.icmp_type))
    if rule.port is not None:
        lines.append('    <port port="%d" protocol=%s/>' % (rule.port, quoteattr(rule.protocol)))
    if rule.source_port:
        lines.append('    <source-port port="%d" protocol=%s/>' % (rule.source_port[0], quoteattr(rule.source_port[1])))
    if rule.l4:
        lines.append('    <protocol value=%s/>' % quoteattr(rule.l4))
    lines.append('    <%s/>' % rule.action)
    lines.append('  </rule>')
    return lines


def policy_xml(rules):
    lines = ['<?xml version="1.0" encoding="utf-8"?>', '<policy target="CONTINUE">', '  <short>tunnelwall egress</short>',
             '  <description>%s</description>' % escape(DESCRIPTION), '  <ingress-zone name="HOST"/>',
             '  <egress-zone name="ANY"/>']
    for rule in rules:
        lines.extend(rule_xml(rule))
    lines.append('</policy>')
    return '\n'.join(lines) + '\n'


def ipset_xml(family, entries):
    lines = ['<?xml version="1.0" encoding="utf-8"?>', '<ipset type="hash:net">', '  <short>tunnelwall egress</short>',
             '  <description>%s</description>' % escape(DESCRIPTION), '  <option name="family" value=%s/>' % quoteattr(family)]
    lines.extend('  <entry>%s</entry>' % escape(entry) for entry in entries)
    lines.append('</ipset>')
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------------------------------
# names
# ----------------------------------------------------------------------------------------------------------------
def policy_name(name):
    return name + POLICY_SUFFIX


def ipset_name(name, purpose, family, protocol=None, port=None):
    middle = '-%s%d' % (protocol, port) if protocol else ''
    return '%s-%s%s%s' % (name, purpose, middle, FAMILIES[family][1])


def owned_ipset_re(name):
    """Every ipset this module may have created for ``name``: NAME-PURPOSE[-PROTOCOLPORT]-v4|v6."""
    return re.compile(r'^%s-[a-z][a-z0-9_]*(-(tcp|udp)[0-9]{1,5})?-v[46]$' % re.escape(name))


def owned_ipsets(name, names):
    pattern = owned_ipset_re(name)
    return sorted(n for n in names if pattern.match(n))


def owned_file(name, filename):
    """True for this module's XML files and firewalld's ``.xml.old`` backups of them."""
    base = filename[:-4] if filename.endswith('.xml.old') else filename
    if not base.endswith('.xml'):
        return False
    base = base[:-4]
    return base == policy_name(name) or bool(owned_ipset_re(name).match(base))


# ----------------------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------------------
def parse_networks(values, family, where):
    """CIDRs (or addresses) of one family -> (networks, problem). Host bits must be clear, as firewalld wants."""
    networks = []
    version = FAMILIES[family][2]
    if values is None:
        return networks, None
    if not isinstance(values, list):
        return networks, '%s=%r: expected a list of %s CIDRs' % (where, values, family)
    for value in values:
        try:
            network = ipaddress.ip_network(str(value).strip(), strict=True)
        except ValueError as error:
            return networks, '%s: %r is not a valid %s CIDR (%s)' % (where, value, family, error)
        if network.version != version:
            return networks, '%s: %r is an IPv%d network in the %s list' % (where, value, network.version, family)
        networks.append(network)
    return networks, None


def check_port(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return '%s=%r: expected a port number from 1 to 65535' % (where, value)
    return None


def check_protocol(value, where):
    if value not in PROTOCOLS:
        return '%s=%r: expected one of %s' % (where, value, ', '.join(PROTOCOLS))
    return None


def check_name(name):
    if not isinstance(name, str) or not name:
        return 'name=%r: must not be empty' % (name,)
    if not NAME_RE.match(name):
        return 'name=%r: only ASCII letters, digits, "-" and "_" are allowed, starting with a letter or digit' % name
    if len(name) > MAX_NAME:
        return 'name=%r: at most %d characters (firewalld limits the policy name %s to %d)' % (
            name, MAX_NAME, policy_name(name), MAX_POLICY_NAME)
    return None


def _rule_problem(index, rule):
    where = 'rules[%d]' % index
    if not isinstance(rule, dict):
        return '%s=%r: expected a dict with purpose, protocol, port, ipv4 and ipv6' % (where, rule)
    purpose = rule.get('purpose')
    if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose):
        return '%s.purpose=%r: expected lower-case letters, digits and "_", starting with a letter' % (where, purpose)
    problem = check_protocol(rule.get('protocol'), where + '.protocol') or check_port(rule.get('port'), where + '.port')
    if problem:
        return problem
    for family in FAMILIES:
        problem = parse_networks(rule.get(family), family, '%s.%s' % (where, family))[1]
        if problem:
            return problem
    return None


def _extra_problem(index, item):
    where = 'extra_allow[%d]' % index
    problem = check_protocol(item.get('protocol'), where + '.protocol') or check_port(item.get('port'), where + '.port')
    if problem:
        return problem
    destinations = item.get('destinations')
    if not destinations:
        return '%s.destinations: empty; give at least one CIDR' % where
    for value in destinations:
        family = 'ipv6' if ':' in str(value) else 'ipv4'
        problem = parse_networks([value], family, where + '.destinations')[1]
        if problem:
            return problem
    return None


def validate_params(params):
    """The first problem with the options, as a message naming option and value; None when fine."""
    problem = check_name(params.get('name'))
    if problem:
        return problem
    rules = params.get('rules') or []
    for index, rule in enumerate(rules):
        problem = _rule_problem(index, rule)
        if problem:
            return problem
    for index, item in enumerate(params.get('extra_allow') or []):
        problem = _extra_problem(index, item)
        if problem:
            return problem
    for value in params.get('dns_servers') or []:
        try:
            ipaddress.ip_address(str(value).split('%', maxsplit=1)[0])
        except ValueError:
            return 'dns_servers: %r is not an IPv4 or IPv6 address' % (value,)
    if params.get('state', 'present') == 'present':
        for ipset in sorted(set(ipset_name(params['name'], rule['purpose'], family, rule['protocol'], rule['port'])
                                for rule in rules for family in FAMILIES)):
            if len(ipset) > MAX_IPSET_NAME:
                return 'rules: purpose too long: ipset name %r would exceed %d characters; shorten name or purpose' % (
                    ipset, MAX_IPSET_NAME)
        if params.get('default_deny') and not any(rule.get(family) for rule in rules if rule['purpose'] == 'tunnel'
                                                  for family in FAMILIES):
            return ('default_deny=true with no tunnel destinations in rules: the host could not reach the tunnel edge; '
                    'pass the egress plan\'s rules')
    return None


# ----------------------------------------------------------------------------------------------------------------
# the desired state
# ----------------------------------------------------------------------------------------------------------------
def entry_text(network):
    """How an ipset entry is written: a host without its /32 or /128, a network as CIDR (firewalld stores it as given)."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def normalize_entries(entries):
    """Entries as firewalld returns them -> the canonical sorted list, so two spellings of one network compare equal."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            return sorted(entries)  # not ours to interpret; compared verbatim
    return [entry_text(n) for n in sorted(networks, key=lambda n: (n.version, n))]


def collapse(networks):
    """Merge overlapping and adjacent networks: firewalld's interval sets reject overlapping entries."""
    return sorted(ipaddress.collapse_addresses(networks))


def dns_rules(servers):
    """UDP and TCP 53 to each resolver; loopback ones are skipped, firewalld lets loopback traffic out before any policy."""
    rules = []
    for server in servers:
        address = ipaddress.ip_address(server.split('%')[0])
        if address.is_loopback:
            continue
        family = 'ipv%d' % address.version
        for protocol in PROTOCOLS:
            rules.append(allow_rule(family, 'address', str(address), 53, protocol))
    return rules


def _group_rules(rules):
    """(purpose, protocol, port) -> {family: collapsed networks}, duplicate rules merged."""
    grouped = collections.OrderedDict()
    for rule in rules:
        key = (rule['purpose'], rule['protocol'], rule['port'])
        bucket = grouped.setdefault(key, {family: [] for family in FAMILIES})
        for family in FAMILIES:
            bucket[family].extend(parse_networks(rule.get(family), family, 'rules')[0])
    for bucket in grouped.values():
        for family in FAMILIES:
            bucket[family] = collapse(bucket[family])
    return grouped


def host_service_rules(dhcp=False, mld=False, metadata=()):
    """Rich rules for egress_request's host services: DHCP client, MLD, the metadata service (its addresses)."""
    rules = [dhcp_rule(family) for family in FAMILIES] if dhcp else []
    if mld:
        rules.append(mld_rule())
    for address in metadata:
        network = ipaddress.ip_network(address)
        rules.append(allow_rule('ipv%d' % network.version, 'address', entry_text(network), 80, 'tcp'))
    return rules


def desired_state(name, rules, default_deny=False, nameservers=None, extra_allow=None, services=None):
    """The objects and rules the module owns when it is done: {'policy', 'ipsets': {name: {family, entries}}, 'rules'}.

    ``services``: host_service_rules' keyword arguments (dhcp, mld, metadata), used only with ``default_deny``.

    One ipset per purpose and family; when rules of one purpose differ in their destinations (it does not happen
    with the plan's tunnel rules) each (protocol, port) gets its own ipset, so nothing is allowed that was not asked.
    """
    ipsets = {}
    allow = []
    grouped = _group_rules(rules)
    for family, (nft_family, dummy, dummy2) in FAMILIES.items():
        by_purpose = collections.OrderedDict()
        for (purpose, protocol, port), bucket in grouped.items():
            if bucket[family]:
                by_purpose.setdefault(purpose, []).append((protocol, port, tuple(bucket[family])))
        for purpose, items in by_purpose.items():
            shared = len(set(networks for dummy3, dummy4, networks in items)) == 1
            for protocol, port, networks in items:
                ipset = ipset_name(name, purpose, family) if shared else ipset_name(name, purpose, family, protocol, port)
                ipsets[ipset] = {'family': nft_family, 'entries': [entry_text(n) for n in networks]}
                allow.append(allow_rule(family, 'ipset', ipset, port, protocol))
    for item in extra_allow or []:
        networks = [ipaddress.ip_network(str(d).strip()) for d in item['destinations']]
        for network in collapse([n for n in networks if n.version == 4]) + collapse([n for n in networks if n.version == 6]):
            allow.append(allow_rule('ipv%d' % network.version, 'address', entry_text(network), item['port'], item['protocol']))
    if default_deny:
        allow.extend(dns_rules(nameservers or []))
        allow.extend(icmp_rule('ipv6', icmp_type) for icmp_type in NDP_TYPES)
        allow.extend(host_service_rules(**(services or {})))
        allow.append(reject_rule())
    unique = []
    for rule in allow:
        if rule not in unique:
            unique.append(rule)
    return {'policy': policy_name(name), 'ipsets': ipsets, 'rules': unique}


# ----------------------------------------------------------------------------------------------------------------
# the change plan
# ----------------------------------------------------------------------------------------------------------------
def state_view(policy, ipsets):
    """What diff mode shows: the policy's target and rich rules, and every owned ipset's entries, sorted."""
    return {'policy': None if policy is None else {'target': policy['target'], 'rich_rules': sorted(policy['rich_rules'])},
            'ipsets': {n: normalize_entries(s['entries']) for n, s in sorted(ipsets.items())}}


def desired_view(desired):
    return {'policy': {'target': 'CONTINUE', 'rich_rules': sorted(render_rule(r) for r in desired['rules'])},
            'ipsets': {n: normalize_entries(s['entries']) for n, s in sorted(desired['ipsets'].items())}}


def _policy_ok(policy):
    return policy is not None and policy['target'] == 'CONTINUE' and policy['ingress_zones'] == ['HOST'] \
        and policy['egress_zones'] == ['ANY']


def _ipset_ok(current, wanted):
    return current is not None and current['type'] == 'hash:net' and current['family'] == wanted['family']


def layer_changes(desired, layer, keep_stale=False):
    """Changes that take one layer (runtime or permanent: {'policy', 'ipsets'}) to the desired state in place.

    Returns {'entries': {ipset: (add, remove, after)}, 'add_rules': [...], 'remove_rules': [...]}. Stale owned
    ipsets are emptied when ``keep_stale`` (the runtime cannot delete an ipset; a reload does).
    """
    entries = {}
    for name, wanted in sorted(desired['ipsets'].items()):
        have = normalize_entries(layer['ipsets'][name]['entries']) if name in layer['ipsets'] else []
        want = normalize_entries(wanted['entries'])
        if have != want:
            entries[name] = (sorted(set(want) - set(have)), sorted(set(have) - set(want)), want)
    if keep_stale:
        for name, current in sorted(layer['ipsets'].items()):
            if name not in desired['ipsets'] and current['entries']:
                entries[name] = ([], normalize_entries(current['entries']), [])
    have_rules = list(layer['policy']['rich_rules']) if layer['policy'] else []
    want_rules = [render_rule(r) for r in desired['rules']]
    return {'entries': entries, 'add_rules': [r for r in want_rules if r not in have_rules],
            'remove_rules': sorted(r for r in have_rules if r not in want_rules)}


def structural(desired, layer):
    """Objects missing, of the wrong kind, or stale in a layer: only a file write and a reload fix those."""
    missing = [] if _policy_ok(layer['policy']) else [desired['policy']]
    missing += [n for n, w in sorted(desired['ipsets'].items()) if not _ipset_ok(layer['ipsets'].get(n), w)]
    stale = sorted(n for n in layer['ipsets'] if n not in desired['ipsets'])
    return missing, stale


def _files_for(desired, objects, full):
    """XML files for ``objects``: with the desired content (``full``) or empty, as a skeleton."""
    files = {}
    rules = desired['rules'] if full else []
    for obj in objects:
        if obj == desired['policy']:
            files['policies/%s.xml' % obj] = policy_xml(rules)
        else:
            wanted = desired['ipsets'][obj]
            entries = normalize_entries(wanted['entries']) if full else []
            files['ipsets/%s.xml' % obj] = ipset_xml(wanted['family'], entries)
    return files


def _layer_steps(changes, layer_name, reject, policy):
    """set_entries, then rule removals, then additions; a new default-deny rule is added last, after every allow."""
    steps = []
    for name, (add, dummy, after) in sorted(changes['entries'].items()):
        if add:
            # New addresses go in before any rule that needs them (an atomic replace drops the stale ones with it).
            steps.append(set_entries(layer_name, name, after))
    if changes['remove_rules']:
        steps.append(remove_rules(layer_name, policy, changes['remove_rules']))
    allows = [r for r in changes['add_rules'] if r != reject]
    if allows:
        steps.append(add_rules(layer_name, policy, allows))
    if reject in changes['add_rules']:
        steps.append(add_rules(layer_name, policy, [reject]))
    for name, (add, dummy, after) in sorted(changes['entries'].items()):
        if not add:
            # Only removals (or emptying a stale ipset): after the rules that used it are gone.
            steps.append(set_entries(layer_name, name, after))
    return steps


def after_files(layer, files, removed):
    """The layer as a reload leaves it once ``files`` are written and ``removed`` deleted (for the plan's later steps)."""
    policy = layer['policy']
    ipsets = dict(layer['ipsets'])
    for path, content in files.items():
        kind, filename = path.split('/', 1)
        obj = filename[:-4]
        if kind == 'policies':
            policy = {'target': 'CONTINUE', 'ingress_zones': ['HOST'], 'egress_zones': ['ANY'], 'rich_rules': _rules_of_xml(content)}
        else:
            family = re.search(r'name="family" value="([^"]+)"', content).group(1)
            ipsets[obj] = {'type': 'hash:net', 'family': family, 'entries': re.findall(r'<entry>([^<]+)</entry>', content)}
    for obj in removed:
        ipsets.pop(obj, None)
    return {'policy': policy, 'ipsets': ipsets}


def _rules_of_xml(content):
    """Rich rules of a policy file this module wrote (it never reads anyone else's)."""
    rules = []
    for block in re.findall(r'<rule([^>]*)>(.*?)</rule>', content, re.S):
        attrs, body = block
        family = re.search(r'family="([^"]+)"', attrs)
        priority = re.search(r'priority="([^"]+)"', attrs)
        destination = re.search(r'<destination (ipset|address)="([^"]+)"/>', body)
        icmp = re.search(r'<icmp-type name="([^"]+)"/>', body)
        port = re.search(r'<port port="([0-9]+)" protocol="([^"]+)"/>', body)
        source_port = re.search(r'<source-port port="([0-9]+)" protocol="([^"]+)"/>', body)
        l4 = re.search(r'<protocol value="([^"]+)"/>', body)
        action = re.search(r'<(accept|reject|drop)/>', body).group(1)
        rules.append(render_rule(Rule(family.group(1) if family else None, destination.group(1) if destination else None,
                                      destination.group(2) if destination else None, int(port.group(1)) if port else None,
                                      port.group(2) if port else None, icmp.group(1) if icmp else None, action,
                                      int(priority.group(1)) if priority else None,
                                      (int(source_port.group(1)), source_port.group(2)) if source_port else None,
                                      l4.group(1) if l4 else None)))
    return rules


def plan_present(desired, runtime, permanent, persist):
    """Steps that make the owned objects exactly ``desired``: in the runtime and, when ``persist``, the permanent config.

    Steps are the records above (WriteFile, RemoveFile, Reload, SetEntries, ChangeRules).
    """
    reject = render_rule(reject_rule())
    steps = []
    if persist:
        missing_p, stale_p = structural(desired, permanent)
        missing_r, stale_r = structural(desired, runtime)
        if missing_p or stale_p or missing_r or stale_r:
            # New or stale objects need a reload anyway: write every owned object's file as desired and reload once.
            objects = [desired['policy']] + sorted(desired['ipsets'])
            files = _files_for(desired, objects, True)
            keep = [p for p in sorted(files) if _unchanged(permanent, p, files[p])]
            for path in sorted(files):
                if path not in keep:
                    steps.append(write_file(path, files[path]))
            for obj in stale_p:
                steps.append(remove_file('ipsets/%s.xml' % obj))
            steps.append(reload_step())
            return steps
        steps += _layer_steps(layer_changes(desired, runtime), 'runtime', reject, desired['policy'])
        steps += _layer_steps(layer_changes(desired, permanent), 'permanent', reject, desired['policy'])
        return steps
    missing_r, dummy = structural(desired, runtime)
    if missing_r:
        missing_p, dummy = structural(desired, permanent)
        files = _files_for(desired, missing_p, False)
        steps += [write_file(path, files[path]) for path in sorted(files)]
        steps.append(reload_step())
        runtime = after_files(permanent, files, [])
    steps += _layer_steps(layer_changes(desired, runtime, keep_stale=True), 'runtime', reject, desired['policy'])
    return steps


def _unchanged(layer, path, content):
    """True when the permanent object already holds what ``content`` would write (no need to rewrite its file)."""
    kind, filename = path.split('/', 1)
    obj = filename[:-4]
    wanted = after_files({'policy': None, 'ipsets': {}}, {path: content}, [])
    if kind == 'policies':
        have = layer['policy']
        return _policy_ok(have) and sorted(have['rich_rules']) == sorted(wanted['policy']['rich_rules'])
    have = layer['ipsets'].get(obj)
    want = wanted['ipsets'][obj]
    return _ipset_ok(have, want) and normalize_entries(have['entries']) == normalize_entries(want['entries'])


def plan_absent(runtime, permanent, files):
    """Delete every owned object: their files (and firewalld's .xml.old backups), then one reload."""
    steps = [remove_file(path) for path in sorted(files)]
    if runtime['policy'] is not None or runtime['ipsets'] or permanent['policy'] is not None or permanent['ipsets'] or steps:
        steps.append(reload_step())
    return steps


def plan_revert(name, runtime, permanent):
    """Throw away runtime-only changes (a reload restores the permanent config); drop skeletons no rule uses.

    A skeleton is what a ``permanent: false`` run created so that the runtime could use it: an owned policy without
    rich rules, or an owned ipset without entries that no permanent rule names. Deleting them restores the state
    before the first run exactly.
    """
    steps = []
    policy = permanent['policy']
    used = ' '.join(policy['rich_rules']) if policy else ''
    for obj, ipset in sorted(permanent['ipsets'].items()):
        if not ipset['entries'] and ('ipset="%s"' % obj) not in used:
            steps.append(remove_file('ipsets/%s.xml' % obj))
    if policy is not None and not policy['rich_rules']:
        steps.append(remove_file('policies/%s.xml' % policy_name(name)))
    if steps or state_view(runtime['policy'], runtime['ipsets']) != state_view(policy, permanent['ipsets']):
        steps.append(reload_step())
    return steps


# The allow-to-destination rules this module writes, as firewalld prints them back (render_rule's form).
ALLOW_RULE_RE = re.compile(r'rule family="(?P<family>ipv[46])" destination (?P<kind>ipset|address)="(?P<destination>[^"]+)" '
                           r'port port="(?P<port>[0-9]+)" protocol="(?P<protocol>tcp|udp)" accept\Z')
METADATA_ADDRESSES = tuple(address.split('/')[0] for address in METADATA)


def allow_list(view, name):
    """A state view's allow rules in egress_applied's shape: {purpose, family, protocol, port, destination}, one per
    destination. An ipset rule's purpose is in the ipset's name; an address rule is ``dns`` (port 53), ``metadata``
    (the metadata service) or ``extra``. Host services without a destination (DHCP, MLD, NDP) and the reject are not
    allow-to-destination rules and are left out, as egress_applied does for the other backends."""
    purpose_re = re.compile(r'^%s-(?P<purpose>[a-z][a-z0-9_]*?)(-(tcp|udp)[0-9]{1,5})?-v[46]$' % re.escape(name))
    found = []
    for text in view['policy']['rich_rules'] if view['policy'] else []:
        match = ALLOW_RULE_RE.match(text)
        if not match:
            continue
        rule = dict(family=match.group('family'), protocol=match.group('protocol'), port=int(match.group('port')))
        destination = match.group('destination')
        if match.group('kind') == 'ipset':
            owner = purpose_re.match(destination)
            for entry in view['ipsets'].get(destination, []):
                found.append(dict(rule, purpose=owner.group('purpose') if owner else destination, destination=entry))
        else:
            purpose = 'dns' if rule['port'] == 53 else 'metadata' if destination in METADATA_ADDRESSES else 'extra'
            found.append(dict(rule, purpose=purpose, destination=destination))
    return found


def summarize(before, after):
    """added / removed entries and rich rules between two state views."""
    added = {'entries': {}, 'rich_rules': []}
    removed = {'entries': {}, 'rich_rules': []}
    for name in sorted(set(before['ipsets']) | set(after['ipsets'])):
        old, new = set(before['ipsets'].get(name, [])), set(after['ipsets'].get(name, []))
        if new - old:
            added['entries'][name] = normalize_entries(new - old)
        if old - new:
            removed['entries'][name] = normalize_entries(old - new)
    old_rules = set(before['policy']['rich_rules']) if before['policy'] else set()
    new_rules = set(after['policy']['rich_rules']) if after['policy'] else set()
    added['rich_rules'] = sorted(new_rules - old_rules)
    removed['rich_rules'] = sorted(old_rules - new_rules)
    return added, removed
