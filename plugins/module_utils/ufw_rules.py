# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ufw egress rules as text: the egress Request rendered as rules in ufw's own file format, parse and edit the files.

Pure functions of a validated Request (egress_request), strings and plain data (no I/O), so every decision of
ufw_egress is unit-tested.
ufw keeps its rules in /etc/ufw/user.rules and user6.rules: between ``### RULES ###`` and ``### END RULES ###``,
each rule is a block of a ``### tuple ###`` line (what ``ufw status`` shows and ``ufw delete`` matches) and the
``-A`` lines iptables-restore loads. Writing these blocks ourselves, exactly as ufw would, lets one
``iptables-restore -n`` load any number of rules instead of one ufw process per rule.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import collections
import ipaddress
import re

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract, egress_request

RULES_START = '### RULES ###'
RULES_END = '### END RULES ###'
TUPLE_MARK = '### tuple ### '
TUPLE_RE = re.compile(r'^### tuple ### (?P<body>.*?)(?: comment=(?P<hex>[0-9a-fA-F]*))?\s*$')
# /etc/default/ufw spells the outgoing policy as the iptables target; ufw's command line as a word.
POLICY_WORDS = {'ACCEPT': 'allow', 'DROP': 'deny', 'REJECT': 'reject'}
POLICY_TARGETS = dict((word, target) for target, word in POLICY_WORDS.items())
CHAINS = {'ipv4': 'ufw-user-output', 'ipv6': 'ufw6-user-output'}
ANY_SOURCE = {'ipv4': '0.0.0.0/0', 'ipv6': '::/0'}

# source_port: the client port of a DHCP rule (ufw's "from any port 68"); None for every other rule.
UfwRule = collections.namedtuple('UfwRule', 'family protocol port destination comment source_port', defaults=(None,))
Block = collections.namedtuple('Block', 'blanks lines comment')
RulesFile = collections.namedtuple('RulesFile', 'head blocks trailing tail')


# ----------------------------------------------------------------------------------------------------------------
# the Request as ufw rules
# ----------------------------------------------------------------------------------------------------------------
def host_form(destination):
    """A destination as ufw writes it: a host without its prefix, a network canonical (compressed IPv6)."""
    network = ipaddress.ip_network(destination)
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


def family_of(destination):
    """ipv6 for an address or network with a colon, else ipv4."""
    return 'ipv6' if ':' in destination else 'ipv4'


def tag(name, purpose):
    """The comment of an owned rule: NAME:PURPOSE (both checked by egress_request: safe in the file and in ufw status)."""
    return '%s:%s' % (name, purpose)


def render(request, nameservers):
    """The rules a validated egress Request asks for, deduplicated, in a stable order; none unless state=present.

    ``nameservers``: where DNS is allowed (egress_request.nameservers). DHCP is the client's source and the server's
    port, to any destination (a renewal is unicast to the lease's server). MLD is not here: ufw user rules cannot name
    ICMPv6 types, and ufw's own before6.rules already accept MLD reports and done messages from link-local sources.
    """
    if request.state != 'present':
        return []
    wanted = []

    def add(protocol, port, destination, purpose):
        """Append the outgoing allow rule to ``destination`` on ``protocol``/``port``, tagged with NAME:``purpose``."""
        wanted.append(UfwRule(family_of(destination), protocol, port, host_form(destination), tag(request.name, purpose)))
    for rule in request.rules:
        for destination in rule.ipv4 + rule.ipv6:
            add(rule.protocol, rule.port, destination, rule.purpose)
    for extra in request.extra_allow:
        for destination in extra.ipv4 + extra.ipv6:
            add(extra.protocol, extra.port, destination, 'extra')
    for server in nameservers:
        for protocol in egress_request.DNS_PROTOCOLS:
            add(protocol, egress_request.DNS_PORT, server, 'dns')
    if request.allow_dhcp:
        for family, client, server in egress_request.DHCP:
            wanted.append(UfwRule(family, 'udp', server, ANY_SOURCE[family], tag(request.name, 'dhcp'), client))
    ipv4, ipv6 = egress_request.metadata_destinations(request)
    for destination in ipv4 + ipv6:
        add('tcp', egress_request.METADATA_PORT, destination, 'metadata')
    return unique(wanted)


def unique(rules):
    """``rules`` without repeats, first occurrence kept (order is what ends up in user*.rules)."""
    seen = set()
    result = []
    for rule in rules:
        if rule not in seen:
            seen.add(rule)
            result.append(rule)
    return result


# ----------------------------------------------------------------------------------------------------------------
# ufw's file format
# ----------------------------------------------------------------------------------------------------------------
def hex_comment(comment):
    """ufw stores a comment as the lowercase hex of its UTF-8 bytes."""
    return binascii.hexlify(comment.encode('utf-8')).decode('ascii')


def decode_comment(text):
    """The text of a hex comment of ufw's (hex_comment's inverse); None for one that is not hex of UTF-8."""
    try:
        return binascii.unhexlify(text).decode('utf-8')
    except (binascii.Error, TypeError, ValueError):
        return None


def tuple_text(rule):
    """The tuple ufw writes for ``ufw allow out [from any port SPORT] to DST port PORT proto PROTO comment C``."""
    source_port = 'any' if rule.source_port is None else '%d' % rule.source_port
    return 'allow %s %d %s %s %s out' % (rule.protocol, rule.port, rule.destination, source_port, ANY_SOURCE[rule.family])


def render_block(rule):
    """The lines of one rule, byte for byte as the ufw command line writes them (no -d for any destination)."""
    destination = '' if rule.destination == ANY_SOURCE[rule.family] else ' -d %s' % rule.destination
    source_port = '' if rule.source_port is None else ' --sport %d' % rule.source_port
    return ('%s%s comment=%s' % (TUPLE_MARK, tuple_text(rule), hex_comment(rule.comment)),
            '-A %s -p %s%s --dport %d%s -j ACCEPT' % (CHAINS[rule.family], rule.protocol, destination, rule.port,
                                                      source_port))


def parse_rules_file(text, path='user.rules'):
    """Split a user*.rules file into the text before the rules, the rule blocks, and the rest.

    A block keeps the blank lines before it, so removing it leaves the file as ufw would have written it.
    Lines between blocks that are no rule (a hand-written ``-A`` line) become blocks without a tuple: kept verbatim.
    A tuple of the kind this module writes owns only the one line ufw writes for it (or that line with another
    ``-j`` target: a hand edit of it); a line after that, even with no blank line between, is someone else's and
    becomes a block of its own - deleting the rule must never take a user's line with it.
    """
    lines = text.split('\n')
    try:
        start = lines.index(RULES_START)
        end = lines.index(RULES_END, start)
    except ValueError:
        raise ValueError('%s: no "%s" ... "%s" section; is this a ufw rules file?' % (path, RULES_START, RULES_END))
    blocks = []
    blanks = []
    current = None
    expected = None  # the lines the current tuple still owns, or None: any line up to a blank one
    for line in lines[start + 1:end]:
        match = TUPLE_RE.match(line)
        if match:
            comment = decode_comment(match.group('hex')) if match.group('hex') is not None else None
            current = Block(tuple(blanks), [line], comment)
            blocks.append(current)
            blanks = []
            expected = _generated_lines(match.group('body'))
        elif not line.strip():
            blanks.append(line)
            current = None
        elif current is not None and (expected is None or (expected and _same_match(line, expected[0]))):
            current.lines.append(line)
            expected = expected[1:] if expected is not None else None
        else:
            current = Block(tuple(blanks), [line], None)
            blocks.append(current)
            blanks = []
            expected = None
    blocks = [Block(b.blanks, tuple(b.lines), b.comment) for b in blocks]
    return RulesFile(tuple(lines[:start + 1]), blocks, tuple(blanks), tuple(lines[end:]))


def _generated_lines(body):
    """The lines ufw writes for a tuple this module would write (an outgoing allow to one destination and port from
    anywhere); None for any other tuple, whose lines (logging, limits, ...) only ufw knows, and which stay verbatim."""
    fields = body.split()
    if len(fields) != 7 or fields[0] != 'allow' or fields[1] not in egress_contract.PROTOCOLS or not fields[2].isdigit() \
            or fields[4] != 'any' or fields[6] != 'out' or fields[5] not in ANY_SOURCE.values():
        return None
    family = 'ipv6' if fields[5] == ANY_SOURCE['ipv6'] else 'ipv4'
    return list(render_block(UfwRule(family, fields[1], int(fields[2]), fields[3], ''))[1:])


def _same_match(line, generated):
    """``line`` is ``generated``, or it with another target (a hand-edited rule of the tuple's, replaced as such)."""
    return line == generated or line.startswith(generated.rsplit(' -j ', 1)[0] + ' -j ')


def render_rules_file(parsed):
    """The text of a parsed user*.rules (parse_rules_file) put back together, blank lines included."""
    lines = list(parsed.head)
    for block in parsed.blocks:
        lines.extend(block.blanks)
        lines.extend(block.lines)
    lines.extend(parsed.trailing)
    lines.extend(parsed.tail)
    return '\n'.join(lines)


def owned(block, name):
    """Whether a rule block is this name's: its comment is tagged NAME:PURPOSE."""
    return block.comment is not None and block.comment.startswith(name + ':')


def block_rule(block, family):
    """The rule an owned block stands for (for reports), or None when its tuple is not an outgoing allow."""
    match = TUPLE_RE.match(block.lines[0])
    fields = match.group('body').split() if match else []
    if len(fields) != 7 or fields[0] != 'allow' or fields[6] != 'out':
        return UfwRule(family, None, None, match.group('body') if match else block.lines[0], block.comment)
    port = int(fields[2]) if fields[2].isdigit() else fields[2]
    return UfwRule(family, fields[1], port, fields[3], block.comment, int(fields[4]) if fields[4].isdigit() else None)


def reconcile_file(text, family, wanted, name, path='user.rules'):
    """Edit one rules file so the owned blocks are exactly ``wanted`` (rules of this family).

    Returns (new_text, added, removed). Blocks without our tag stay verbatim and in place. Owned blocks that are
    still wanted stay where they are; stale ones go; missing ones are inserted after the last owned block kept
    (or at the end), so the group keeps its position relative to the user's own rules. A block counts as
    present only when every line matches what we render, so a hand-edited owned rule is replaced.
    """
    parsed = parse_rules_file(text, path)
    wanted_blocks = collections.OrderedDict((render_block(r), r) for r in wanted if r.family == family)
    kept = []
    removed = []
    present = set()
    insert_at = None
    spacing = None  # the blank lines of a removed block, for a user's block that followed it without any
    for block in parsed.blocks:
        if owned(block, name):
            if block.lines in wanted_blocks and block.lines not in present:
                present.add(block.lines)
                kept.append(block)
                insert_at = len(kept)
                spacing = None
            else:
                removed.append(block_rule(block, family))
                spacing = block.blanks if spacing is None else spacing
            continue
        if spacing is not None and not block.blanks:
            block = block._replace(blanks=spacing)
        spacing = None
        kept.append(block)
    added = [rule for lines, rule in wanted_blocks.items() if lines not in present]
    new_blocks = [Block(('',), lines, rule.comment) for lines, rule in wanted_blocks.items() if lines not in present]
    position = len(kept) if insert_at is None else insert_at
    kept[position:position] = new_blocks
    if not added and not removed:
        return text, [], []
    return render_rules_file(RulesFile(parsed.head, kept, parsed.trailing, parsed.tail)), added, removed


def owned_rules(text, family, name, path='user.rules'):
    """The owned rules of one file, as rules, in file order."""
    return [block_rule(b, family) for b in parse_rules_file(text, path).blocks if owned(b, name)]


# ----------------------------------------------------------------------------------------------------------------
# /etc/default/ufw, ufw.conf and the state file
# ----------------------------------------------------------------------------------------------------------------
def read_assignments(text):
    """KEY=value lines of a shell-style configuration file (quotes removed)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#') or '=' not in line:
            continue
        key, value = line.split('=', 1)
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def output_policy(defaults_text):
    """The outgoing policy word (allow, deny, reject) of /etc/default/ufw."""
    target = read_assignments(defaults_text).get('DEFAULT_OUTPUT_POLICY', 'ACCEPT').upper()
    if target not in POLICY_WORDS:
        raise ValueError('/etc/default/ufw: DEFAULT_OUTPUT_POLICY=%r is none of %s' % (target, ', '.join(POLICY_WORDS)))
    return POLICY_WORDS[target]


def ipv6_enabled(defaults_text):
    """Whether /etc/default/ufw has IPV6=yes (ufw's default when the line is missing)."""
    return read_assignments(defaults_text).get('IPV6', 'yes').lower() == 'yes'


def ufw_enabled(conf_text):
    """Whether ufw.conf has ENABLED=yes: ufw is active and its rules are loaded at boot."""
    return read_assignments(conf_text).get('ENABLED', 'no').lower() == 'yes'


def desired_policy(current, default_deny, state, remembered):
    """The outgoing policy to end with, and the state file's new content (None: remove it).

    ``remembered`` is the state file's content: the policy found before this module first denied outgoing
    traffic, and the policy it set. Deny or reject already in place satisfies default_deny, and stays the
    user's own: only a policy this module set is ever put back.
    """
    deny = default_deny and state == 'present'
    if deny:
        if current in ('deny', 'reject'):
            return current, remembered
        original = remembered['original_policy'] if remembered else current
        # reject, not deny: a blocked program gets an error at once instead of waiting for its timeout.
        return 'reject', {'original_policy': original, 'set_policy': 'reject'}
    if remembered:
        if current == remembered.get('set_policy'):
            return remembered['original_policy'], None
        # Someone changed the policy since we set it: theirs wins, and we forget ours.
        return current, None
    return current, remembered


def diff_text(rules, policy):
    """A readable listing of the owned rules and the outgoing policy, for --diff."""
    lines = ['default outgoing policy: %s' % policy]
    for rule in rules:
        lines.append(describe(rule))
    return '\n'.join(lines) + '\n'


def describe(rule):
    """One rule as a line of the diff: the outgoing allow it is, or the destination of one that is not an allow rule."""
    if rule.protocol is None:
        return '%s  # %s (not an outgoing allow rule)' % (rule.destination, rule.comment)
    source = '' if rule.source_port is None else ' from port %d' % rule.source_port
    return 'allow out %s/%s%s to %s  # %s' % (rule.protocol, rule.port, source, rule.destination, rule.comment)


def applied_rule(rule):
    """An owned rule in the shape every backend reports (egress_applied.rule_changes): its purpose from NAME:PURPOSE."""
    return {'purpose': rule.comment.split(':', 1)[1], 'family': rule.family, 'protocol': rule.protocol,
            'port': rule.port, 'destination': rule.destination}
