# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""firewalld_egress's renderer, as pure functions: the Request as firewalld objects, and the steps that get there.

``desired_state(request, nameservers)`` renders a validated egress_request.Request (the only validator of the
options) into one policy and its ipsets; ``plan_present``/``plan_absent`` compare them with what firewalld holds
(runtime and permanent layers, read by firewalld_client) and return the steps that close the gap. Objects are data
(``Policy``, ``IpSet``) until firewalld_client writes them: ``object_xml`` renders a file only to write it, and what
a reload will load is known from the data, never read back from the text. Nothing here runs a command.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import functools
import ipaddress
import re
from xml.sax.saxutils import quoteattr, escape

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract, egress_request, egress_revert

# firewalld limits a policy name to 18 characters (egress_request.MAX_NAME['firewalld'] keeps NAME-egress within it);
# ipset names must fit the kernel's 31 characters.
POLICY_SUFFIX = egress_revert.FIREWALLD_POLICY_SUFFIX
MAX_IPSET_NAME = 31
IPSET_FAMILY = {'ipv4': 'inet', 'ipv6': 'inet6'}  # egress_request's families as firewalld's ipset option names them
# The default-deny rule sits in the policy's last chain, so every allow rule is evaluated before it.
REJECT_PRIORITY = 32767
# Under default-deny IPv6 still needs neighbour discovery: conntrack does not track it, so the
# "established, related" rule does not let it out, and without it the host loses its IPv6 neighbours.
NDP_TYPES = ('neighbour-advertisement', 'neighbour-solicitation', 'router-solicitation')
DESCRIPTION = 'Managed by tunnelwall.cloudflared.firewalld_egress; changes made here are overwritten.'
# DHCP client traffic: firewalld's rich rule takes one element, so it is the client's source port (68, 546), which
# only root can bind, rather than the server port any user could send to; any destination (a renewal is unicast).
DHCP_SOURCE_PORTS = dict((family, client) for family, client, dummy in egress_request.DHCP)
# firewalld 1.3 knows no MLD icmptype (`firewall-cmd --get-icmptypes`), so MLD is allowed as ICMPv6 to multicast
# destinations: every MLD message goes to a multicast address (ff02::16, ff02::2 or the group itself); what else
# matches (an echo request to a group) does not leave the link either.
MULTICAST_V6 = 'ff00::/8'
ICMPV6 = 'ipv6-icmp'
DNS_PORT = 53

# source_port: (port, protocol) of a source-port element; l4: a protocol element's value (a rich rule has one element).
Rule = collections.namedtuple('Rule', 'family destination_kind destination port protocol icmp_type action priority '
                                      'source_port l4', defaults=(None, None))
# What a policy or ipset file holds, as data; firewalld_client renders it (object_xml) when it writes the file.
Policy = collections.namedtuple('Policy', 'rules')
IpSet = collections.namedtuple('IpSet', 'family entries')

# The steps of a change plan, one record type per kind. ``kind`` names the firewalld_client method that carries the
# step out (``_step_KIND``), so a step is also the tuple (KIND, arguments...) that method takes.
WriteFile = collections.namedtuple('WriteFile', 'kind path content')          # path relative to /etc/firewalld
RemoveFile = collections.namedtuple('RemoveFile', 'kind path')
Reload = collections.namedtuple('Reload', 'kind')
SetEntries = collections.namedtuple('SetEntries', 'kind layer ipset entries')  # layer: runtime or permanent
ChangeRules = collections.namedtuple('ChangeRules', 'kind layer policy rules')  # kind: add_rules or remove_rules


# The step constructors: write_file(path, content), remove_file(path), reload_step(), set_entries(layer, ipset, entries),
# add_rules(layer, policy, rules), remove_rules(layer, policy, rules).
write_file = functools.partial(WriteFile, 'write_file')
remove_file = functools.partial(RemoveFile, 'remove_file')
reload_step = functools.partial(Reload, 'reload')
set_entries = functools.partial(SetEntries, 'set_entries')
add_rules = functools.partial(ChangeRules, 'add_rules')
remove_rules = functools.partial(ChangeRules, 'remove_rules')


def allow_rule(family, destination_kind, destination, port, protocol):
    """A rich rule accepting ``protocol``/``port`` to ``destination`` (an address or, by ``destination_kind``, an ipset)."""
    return Rule(family, destination_kind, destination, port, protocol, None, 'accept', None)


def icmp_rule(family, icmp_type):
    """A rich rule accepting the ICMP(v6) type ``icmp_type`` of ``family``, to any destination."""
    return Rule(family, None, None, None, None, icmp_type, 'accept', None)


def dhcp_rule(family):
    """A rich rule accepting UDP from the DHCP client's source port of ``family``, to any destination (a renewal is unicast)."""
    return Rule(family, None, None, None, None, None, 'accept', None, (DHCP_SOURCE_PORTS[family], 'udp'), None)


def mld_rule():
    """A rich rule accepting ICMPv6 to multicast destinations: the MLD reports IPv6 needs on the link."""
    return Rule('ipv6', 'address', MULTICAST_V6, None, None, None, 'accept', None, None, ICMPV6)


def reject_rule():
    """The policy's last rich rule (lowest priority): reject whatever no allow rule accepted - the default deny."""
    return Rule(None, None, None, None, None, None, 'reject', REJECT_PRIORITY)


def _elements(rule):
    """A rule's elements as (name, ((attribute, value), ...)): the same in a rich rule's text and in a policy file."""
    elements = []
    if rule.destination_kind:
        elements.append(('destination', ((rule.destination_kind, rule.destination),)))
    if rule.icmp_type:
        elements.append(('icmp-type', (('name', rule.icmp_type),)))
    if rule.port is not None:
        elements.append(('port', (('port', rule.port), ('protocol', rule.protocol))))
    if rule.source_port:
        elements.append(('source-port', (('port', rule.source_port[0]), ('protocol', rule.source_port[1]))))
    if rule.l4:
        elements.append(('protocol', (('value', rule.l4),)))
    return elements


def render_rule(rule):
    """A rule in the exact text firewalld prints it back in (``--list-rich-rules``), so rules compare as strings."""
    parts = ['rule'] + ['%s="%s"' % (key, value) for key, value in (('priority', rule.priority), ('family', rule.family))
                        if value is not None]
    parts += ['%s %s' % (name, ' '.join('%s="%s"' % pair for pair in attributes)) for name, attributes in _elements(rule)]
    return ' '.join(parts + [rule.action])


def object_xml(content):
    """A Policy or IpSet as the XML file firewalld keeps it in (its own format)."""
    head = ['<?xml version="1.0" encoding="utf-8"?>']
    short = ['  <short>tunnelwall egress</short>', '  <description>%s</description>' % escape(DESCRIPTION)]
    if isinstance(content, IpSet):
        lines = head + ['<ipset type="hash:net">'] + short + [
            '  <option name="family" value=%s/>' % quoteattr(content.family)]
        lines += ['  <entry>%s</entry>' % escape(entry) for entry in content.entries] + ['</ipset>']
        return '\n'.join(lines) + '\n'
    lines = head + ['<policy target="CONTINUE">'] + short + ['  <ingress-zone name="HOST"/>', '  <egress-zone name="ANY"/>']
    for rule in content.rules:
        attributes = ''.join(' %s=%s' % (key, quoteattr(str(value))) for key, value in (
            ('family', rule.family), ('priority', rule.priority)) if value is not None)
        lines.append('  <rule%s>' % attributes)
        lines += ['    <%s %s/>' % (name, ' '.join('%s=%s' % (k, quoteattr(str(v))) for k, v in attrs))
                  for name, attrs in _elements(rule)]
        lines += ['    <%s/>' % rule.action, '  </rule>']
    return '\n'.join(lines + ['</policy>']) + '\n'


# ----------------------------------------------------------------------------------------------------------------
# names
# ----------------------------------------------------------------------------------------------------------------
def policy_name(name):
    """The firewalld policy of ``name``: NAME plus POLICY_SUFFIX."""
    return name + POLICY_SUFFIX


def ipset_name(name, purpose, family, protocol=None, port=None):
    """The ipset NAME-PURPOSE[-PROTOCOLPORT]-v4|v6 holding one purpose's destinations of one family (owned_ipset_re
    matches it)."""
    middle = '-%s%d' % (protocol, port) if protocol else ''
    return '%s-%s%s-v%s' % (name, purpose, middle, family[-1])


def owned_ipset_re(name):
    """Every ipset this module may have created for ``name``: NAME-PURPOSE[-PROTOCOLPORT]-v4|v6 (group ``purpose``)."""
    return re.compile('^' + egress_revert.FIREWALLD_IPSET_PATTERN % re.escape(name) + '$')


def owned_ipsets(name, names):
    """The names among ``names`` that are ipsets of ``name`` (owned_ipset_re), sorted."""
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
# the desired state
# ----------------------------------------------------------------------------------------------------------------
def render_problem(request):
    """What firewalld cannot render of an otherwise valid Request (ipset names over the kernel's 31 characters)."""
    for rule in request.rules:
        ipset = ipset_name(request.name, rule.purpose, 'ipv4', rule.protocol, rule.port)
        if len(ipset) > MAX_IPSET_NAME:
            return 'rules: purpose too long: ipset name %r would exceed %d characters; shorten name or purpose' % (
                ipset, MAX_IPSET_NAME)
    return None


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


def collapse(texts):
    """CIDR texts of one family -> merged networks: firewalld's interval sets refuse overlapping entries."""
    return sorted(ipaddress.collapse_addresses(ipaddress.ip_network(text) for text in texts))


def _address_rules(protocol, port, destinations):
    return [allow_rule('ipv%d' % n.version, 'address', entry_text(n), port, protocol) for n in destinations]


def host_rules(request, nameservers):
    """Under a default deny: DNS to the resolvers (but loopback ones: firewalld lets loopback out before any policy),
    neighbour discovery, the Request's host services (DHCP, MLD, the metadata service), then the reject."""
    if not request.default_deny:
        return []
    servers = [ipaddress.ip_network(s.split('%', maxsplit=1)[0]) for s in nameservers]
    servers = [n for n in servers if not n.network_address.is_loopback]
    rules = [rule for server in servers for protocol in egress_request.DNS_PROTOCOLS
             for rule in _address_rules(protocol, DNS_PORT, [server])]
    rules += [icmp_rule('ipv6', icmp_type) for icmp_type in NDP_TYPES]
    rules += [dhcp_rule(family) for family in egress_contract.FAMILIES] if request.allow_dhcp else []
    rules += [mld_rule()] if request.allow_mld else []
    metadata = [ipaddress.ip_network(a) for part in egress_request.metadata_destinations(request) for a in part]
    return rules + _address_rules('tcp', egress_request.METADATA_PORT, metadata) + [reject_rule()]


def desired_state(request, nameservers=()):
    """The objects and rules the module owns when it is done: {'policy', 'ipsets': {name: IpSet}, 'rules'}.

    One ipset per purpose and family; when rules of one purpose differ in their destinations (it does not happen
    with the plan's tunnel rules) each (protocol, port) gets its own ipset, so nothing is allowed that was not asked.
    """
    ipsets = {}
    allow = []
    for family in egress_contract.FAMILIES:
        by_purpose = collections.OrderedDict()
        for rule in request.rules:  # egress_request merged the rules of one (purpose, protocol, port)
            networks = tuple(collapse(getattr(rule, family)))
            if networks:
                by_purpose.setdefault(rule.purpose, []).append((rule.protocol, rule.port, networks))
        for purpose, items in by_purpose.items():
            shared = len(set(item[2] for item in items)) == 1  # items are (protocol, port, networks)
            for protocol, port, networks in items:
                ipset = ipset_name(request.name, purpose, family, *(() if shared else (protocol, port)))
                ipsets[ipset] = IpSet(IPSET_FAMILY[family], [entry_text(n) for n in networks])
                allow.append(allow_rule(family, 'ipset', ipset, port, protocol))
    for extra in request.extra_allow:
        allow += _address_rules(extra.protocol, extra.port, collapse(extra.ipv4) + collapse(extra.ipv6))
    unique = []
    for rule in allow + host_rules(request, nameservers):
        if rule not in unique:
            unique.append(rule)
    return {'policy': policy_name(request.name), 'ipsets': ipsets, 'rules': unique}


# ----------------------------------------------------------------------------------------------------------------
# the change plan
# ----------------------------------------------------------------------------------------------------------------
def state_view(policy, ipsets):
    """What diff mode shows: the policy's target and rich rules, and every owned ipset's entries, sorted."""
    return {'policy': None if policy is None else {'target': policy['target'], 'rich_rules': sorted(policy['rich_rules'])},
            'ipsets': {n: normalize_entries(s['entries']) for n, s in sorted(ipsets.items())}}


def desired_view(desired):
    """The desired state (desired_state) as state_view shows it, to compare with what firewalld holds."""
    return state_view({'target': 'CONTINUE', 'rich_rules': [render_rule(r) for r in desired['rules']]},
                      dict((n, {'entries': s.entries}) for n, s in desired['ipsets'].items()))


def _layer_of(content_by_object, layer=None):
    """A layer ({'policy', 'ipsets'}, as firewalld_client.read gives it) holding Policy/IpSet data."""
    layer = dict(layer or {'policy': None, 'ipsets': {}}, ipsets=dict((layer or {}).get('ipsets') or {}))
    for obj, content in content_by_object.items():
        if isinstance(content, IpSet):
            layer['ipsets'][obj] = {'type': 'hash:net', 'family': content.family, 'entries': list(content.entries)}
        else:
            layer['policy'] = {'target': 'CONTINUE', 'ingress_zones': ['HOST'], 'egress_zones': ['ANY'],
                               'rich_rules': [render_rule(r) for r in content.rules]}
    return layer


def _policy_ok(policy):
    return policy is not None and policy['target'] == 'CONTINUE' and policy['ingress_zones'] == ['HOST'] \
        and policy['egress_zones'] == ['ANY']


def _ipset_ok(current, wanted):
    return current is not None and current['type'] == 'hash:net' and current['family'] == wanted.family


def layer_changes(desired, layer, keep_stale=False):
    """Changes that take one layer (runtime or permanent: {'policy', 'ipsets'}) to the desired state in place.

    Returns {'entries': {ipset: (add, remove, after)}, 'add_rules': [...], 'remove_rules': [...]}. Stale owned
    ipsets are emptied when ``keep_stale`` (the runtime cannot delete an ipset; a reload does).
    """
    entries = {}
    for name, wanted in sorted(desired['ipsets'].items()):
        have = normalize_entries(layer['ipsets'][name]['entries']) if name in layer['ipsets'] else []
        want = normalize_entries(wanted.entries)
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


def _contents(desired, objects, full):
    """{object: Policy or IpSet} for ``objects``: with the desired content (``full``) or empty, as a skeleton."""
    return dict((obj, Policy(desired['rules'] if full else []) if obj == desired['policy'] else
                 IpSet(desired['ipsets'][obj].family, normalize_entries(desired['ipsets'][obj].entries) if full else []))
                for obj in objects)


def _path(obj, content):
    return '%s/%s.xml' % ('ipsets' if isinstance(content, IpSet) else 'policies', obj)


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


def _same(layer, obj, content):
    """True when the permanent object already holds ``content`` (no need to rewrite its file)."""
    if isinstance(content, IpSet):
        have = layer['ipsets'].get(obj)
        return _ipset_ok(have, content) and normalize_entries(have['entries']) == normalize_entries(content.entries)
    have = layer['policy']
    return _policy_ok(have) and sorted(have['rich_rules']) == sorted(render_rule(r) for r in content.rules)


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
            contents = _contents(desired, [desired['policy']] + sorted(desired['ipsets']), True)
            steps += [write_file(_path(obj, content), content) for obj, content in sorted(
                contents.items(), key=lambda item: _path(*item)) if not _same(permanent, obj, content)]
            steps += [remove_file('ipsets/%s.xml' % obj) for obj in stale_p]
            return steps + [reload_step()]
        steps += _layer_steps(layer_changes(desired, runtime), 'runtime', reject, desired['policy'])
        steps += _layer_steps(layer_changes(desired, permanent), 'permanent', reject, desired['policy'])
        return steps
    missing_r, dummy = structural(desired, runtime)
    if missing_r:
        missing_p, dummy = structural(desired, permanent)
        contents = _contents(desired, missing_p, False)
        steps += [write_file(_path(obj, content), content) for obj, content in sorted(contents.items(),
                                                                                      key=lambda item: _path(*item))]
        steps.append(reload_step())
        runtime = _layer_of(contents, permanent)
    steps += _layer_steps(layer_changes(desired, runtime, keep_stale=True), 'runtime', reject, desired['policy'])
    return steps


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
METADATA_ADDRESSES = tuple(address.split('/', maxsplit=1)[0] for family in egress_contract.FAMILIES
                           for address in egress_request.METADATA[family])


def allow_list(view, name):
    """A state view's allow rules in egress_applied's shape: {purpose, family, protocol, port, destination}, one per
    destination. An ipset rule's purpose is in the ipset's name; an address rule is ``dns`` (port 53), ``metadata``
    (the metadata service) or ``extra``. Host services without a destination (DHCP, MLD, NDP) and the reject are not
    allow-to-destination rules and are left out, as egress_applied does for the other backends."""
    purpose_re = owned_ipset_re(name)
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
            purpose = 'dns' if rule['port'] == DNS_PORT else 'metadata' if destination in METADATA_ADDRESSES else 'extra'
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
