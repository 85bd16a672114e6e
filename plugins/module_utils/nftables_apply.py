# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables_egress's change as an egress_transaction backend, and its result (ufw_apply, firewalld_apply are its twins).

What is compared is what nft itself lists: the live table (``nft -j list table``) against the rendered one, loaded
into an empty network namespace of its own (``unshare --net``) and listed by the same nft - so formatting, element
order and nft's own normalisation of the rules never show up as a change, and the comparison needs no parser of ours.
The files (ruleset, unit, drop-in) are compared byte for byte.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import (
    egress_applied, egress_contract, egress_revert)
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_transaction import EgressError
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import nftables_rules

MODULE = 'tunnelwall.cloudflared.nftables_egress'
# Lists the table twice (JSON, to compare; text, for the diff), separated by a line nft never prints.
SEPARATOR = '---- tunnelwall ----'


def comparable(listing):
    """``nft -j list table`` output -> its objects without handles and metainfo (what differs between two loads)."""
    def strip(value):
        """``value`` with every ``handle`` key removed, at any depth."""
        if isinstance(value, dict):
            return dict((k, strip(v)) for k, v in value.items() if k != 'handle')
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return [strip(item) for item in json.loads(listing).get('nftables', []) if 'metainfo' not in item]


def _listing(name):
    """A shell line listing table NAME as JSON, the separator, then as text; $1 is nft."""
    return ('"$1" -j list table %s %s && echo "%s" && "$1" list table %s %s'
            % (nftables_rules.FAMILY, name, SEPARATOR, nftables_rules.FAMILY, name))


def _split(out):
    json_part, dummy, text = out.partition('\n%s\n' % SEPARATOR)
    return comparable(json_part), text


class NftablesBackend(object):
    """Write the files, load the table; nothing to commit (the kernel has no runtime/permanent layers)."""

    def __init__(self, request, nameservers, run, binaries, config_dir=nftables_rules.CONFIG_DIR, systemd_dir=nftables_rules.SYSTEMD_DIR,
                 systemd_running=False):
        self.request = request
        self.run = run
        self.nft = binaries['nft']
        self.unshare = binaries.get('unshare')
        self.systemctl = binaries.get('systemctl') if systemd_running else None
        self.paths = nftables_rules.paths(request.name, config_dir, systemd_dir if os.path.isdir(systemd_dir) else None)
        self.record_path = self.paths.record
        self.allowances = nftables_rules.allowances(request, nameservers)
        self.rules = nftables_rules.chain_rules(request, self.allowances)  # none for absent: no set, no default deny
        self.script = nftables_rules.render(request, self.allowances)
        unit = os.path.basename(self.paths.unit) if self.paths.unit else None
        self.wanted = {}  # path -> desired content (None: absent)
        present = request.state == 'present'
        self.wanted[self.paths.ruleset] = nftables_rules.header(MODULE, request.name, unit) + self.script if present else None
        if unit:
            self.wanted[self.paths.unit] = nftables_rules.unit_text(request.name, self.nft, self.paths.ruleset) if present else None
            self.wanted[self.paths.dropin] = nftables_rules.dropin_text(request.name, unit) if present else None
        self.commands = []
        self.views = None
        self.allowed = ([], [])
        self.changed_files = []

    def live(self):
        """(comparable objects, text) of the live table, or (None, '') when it does not exist."""
        rc, out, err = self.run(['/bin/sh', '-c', _listing(self.request.name), 'nft', self.nft])
        if rc != 0:
            if 'No such file or directory' in err:
                return None, ''
            self._check_name(err)
            raise EgressError('cannot list table %s (rc=%s): %s' % (nftables_rules.table(self.request.name), rc, (err or out).strip()))
        return _split(out)

    def desired(self):
        """(comparable objects, text) of the rendered table as nft lists it, loaded in an empty network namespace."""
        if not self.script:
            return None, ''
        if not self.unshare:
            raise EgressError('unshare (util-linux) is needed to compare the table with the live one: install it')
        line = '"$1" -f - && ' + _listing(self.request.name)
        rc, out, err = self.run([self.unshare, '--net', '--', '/bin/sh', '-c', line, 'nft', self.nft], data=self.script)
        if rc != 0:
            self._check_name(err)
            raise EgressError('nft refuses the table the request renders (rc=%s): %s; nothing was changed'
                              % (rc, (err or out).strip()))
        return _split(out)

    def _check_name(self, err):
        # The name is the one word of the script that comes from the user unchecked by nft's own grammar.
        if 'syntax error' in err and ('table %s %s' % (nftables_rules.FAMILY, self.request.name)) in err:
            raise EgressError('name=%r: nft cannot use it as a table name (a keyword of its language?): %s; nothing '
                              'was changed' % (self.request.name, err.strip().splitlines()[0]))

    def check_owner(self, live_text):
        """Refuse a live table of our name that is not ours: no marker, and no ruleset file of ours loads it."""
        if not live_text or nftables_rules.owned_listing(live_text, self.request.name):
            return
        # A table an earlier version of this module loaded has no comment yet; its ruleset file names it.
        ours = (egress_revert.read_text(self.paths.ruleset) or '').startswith(
            '# Written by %s (name %s);' % (MODULE, self.request.name))
        if not ours:
            raise EgressError('table %s exists and was not created by this module (no comment "%s", no %s): it is '
                              'another program\'s table; choose another name. Nothing was changed'
                              % (nftables_rules.table(self.request.name), nftables_rules.marker(self.request.name), self.paths.ruleset))

    def plan(self):
        """Compare the live table with the rendered one and the files with what they should hold; {'changed': ...}.
        Refuses a live table of that name that is not ours (check_owner)."""
        live, live_text = self.live()
        self.check_owner(live_text)
        desired, desired_text = self.desired()
        self.changed_files = sorted(path for path, text in self.wanted.items() if egress_revert.read_text(path) != text)
        self.views = (live_text, desired_text)
        self.allowed = (set_rules(live), set_rules(desired))
        return {'changed': live != desired or bool(self.changed_files)}

    def files(self):
        """Every file the change may write or remove: ruleset, and the systemd unit and drop-in where systemd is used."""
        return sorted(self.wanted)

    def spec_for(self, record):
        """The restore spec of a pending record: its name's ruleset, unit and drop-in."""
        name = record.get('name')
        if name != self.request.name:
            if not isinstance(name, str) or not egress_revert.NAME_RE.match(name):
                return {'files': [], 'shared': [], 'reload': []}
            files = nftables_rules.paths(name, os.path.dirname(self.paths.ruleset),
                                         os.path.dirname(self.paths.unit) if self.paths.unit else None)
            commands = [nftables_rules.restore_command(self.nft, files, name)] + self.reload_commands()[1:]
            return {'files': sorted(p for p in files[:3] if p), 'shared': [], 'reload': commands}
        return {'files': self.files(), 'shared': [], 'reload': self.reload_commands()}

    def reload_commands(self):
        """What loads restored files: the ruleset into the live table (or the table deleted), then
        systemd's daemon-reload where systemd is used."""
        commands = [nftables_rules.restore_command(self.nft, self.paths, self.request.name)]
        if self.systemctl:
            commands.append([self.systemctl, 'daemon-reload'])
        return commands

    def steps(self):
        """What apply() does, in order, as (argv, stdin): nft and systemctl commands, ``write``/``remove`` of a file.

        The check comes first and the load last, so a table nft refuses is refused before a file is written.
        """
        steps = [([self.nft, '-c', '-f', '-'], self.script)] if self.script else []
        steps += [(['write' if self.wanted[path] is not None else 'remove', path], None) for path in self.changed_files]
        if self.script:
            steps.append(([self.nft, '-f', self.paths.ruleset], None))
        elif self.views[0]:  # absent, and the table is live
            steps.append(([self.nft, 'delete', 'table', nftables_rules.FAMILY, self.request.name], None))
        if self.systemctl and self.paths.unit in self.changed_files:
            steps.append(([self.systemctl, 'daemon-reload'], None))
        return steps

    def apply(self):
        """Carry out steps() in order, noting each in ``commands``; a failed command is an EgressError (the
        transaction restores)."""
        for argv, data in self.steps():
            self.commands.append(argv)
            if argv[0] == 'write':
                if not os.path.isdir(os.path.dirname(argv[1])):
                    os.makedirs(os.path.dirname(argv[1]), 0o755)
                egress_revert.write_durably(argv[1], self.wanted[argv[1]], 0o644)
            elif argv[0] == 'remove':
                egress_revert.remove_durably(argv[1])
            else:
                rc, out, err = self.run(argv, data=data)
                if rc != 0:
                    raise EgressError('%s failed (rc=%s): %s' % (' '.join(argv[:3]), rc, (err or out).strip()), rc=rc)

    def commit(self):
        """Nothing to do: the kernel has no runtime/permanent layers, the files written are the permanent part."""


def set_rules(objects):
    """The destinations a table's sets allow (``comparable()`` objects), as egress_applied.rule_changes' rules."""
    rules = []
    for item in objects or []:
        name = item.get('set', {}).get('name', '') if isinstance(item, dict) else ''
        parts = name.rsplit('_', 3)
        if len(parts) != 4 or parts[1] not in egress_contract.PROTOCOLS or not parts[2].isdigit() or \
                parts[3] not in ('v4', 'v6'):
            continue
        for purpose, destinations in egress_applied.from_nftables(json.dumps({'nftables': [item]})).items():
            rules.extend({'purpose': purpose, 'family': 'ip' + parts[3], 'protocol': parts[1], 'port': int(parts[2]),
                          'destination': destination} for destination in destinations)
    return rules


def result(backend, changed, check_mode, diff):
    """The module's result once the transaction is done."""
    before, after = backend.views
    added, removed = egress_applied.rule_changes(*backend.allowed)
    out = dict(changed=changed, table=nftables_rules.table(backend.request.name), added=added, removed=removed,
               sets=sorted(nftables_rules.set_name(a) for a in backend.allowances),
               rule_count=len(backend.rules), files=backend.changed_files,
               commands=[argv for argv, dummy in backend.steps()] if check_mode and changed else backend.commands)
    if diff:
        out['diff'] = dict(before=before, after=after, before_header='nft list table %s (live)' % out['table'],
                           after_header='nft list table %s (this run)' % out['table'])
    return out
