# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""firewalld_egress's backend for egress_transaction (nftables_apply is its twin): the Request in, rendered and loaded.

``FirewalldBackend(request, nameservers, run)`` renders the validated Request (firewalld_policy), reads firewalld over
D-Bus and carries the plan out (firewalld_client): what to change, how to apply it and commit it to the permanent
configuration, which files a restore must cover, and the module's result and diff.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_applied, egress_revert
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_transaction import EgressError
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import firewalld_policy
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.firewalld_client import Firewalld

EMPTY = {'policy': None, 'ipsets': {}}


def foreign_objects(layers):
    """Objects of our names without our marker (the description every object this module writes carries)."""
    found = set()
    for layer in layers:
        if layer['policy'] is not None and layer['policy'].get('description', firewalld_policy.DESCRIPTION) != firewalld_policy.DESCRIPTION:
            found.add('policy')
        found.update('ipset %s' % n for n, s in layer['ipsets'].items() if s.get('description', firewalld_policy.DESCRIPTION) != firewalld_policy.DESCRIPTION)
    return sorted(found)


class FirewalldBackend(object):
    """Apply (new objects: their complete files and one reload; else the runtime), commit to the permanent configuration.

    The pending record holds every owned file (and firewalld's .xml.old backups) as it was, so a restore - files back,
    then a reload that keeps other tools' runtime-only rules - undoes either. ``permanent=False`` (deprecated) changes
    the runtime only and never commits; the Request's state ``reverted`` (deprecated) throws such a change away.
    """

    def __init__(self, request, nameservers, run, permanent=True, config_dir='/etc/firewalld'):
        self.request = request
        self.name = request.name
        self.permanent = permanent
        self.firewalld = Firewalld(run, config_dir)
        self.record_path = os.path.join(config_dir, egress_revert.RECORD_NAME)
        self.desired = firewalld_policy.desired_state(request, nameservers) if request.state == 'present' else None
        self.steps = []
        self.views = None

    def plan(self):
        """Read both layers and plan: (steps, runtime before/after views, permanent before/after views or None)."""
        runtime = self.firewalld.read(self.name, permanent=False)
        permanent = self.firewalld.read(self.name, permanent=True)
        foreign = foreign_objects((runtime, permanent))
        if foreign:
            raise EgressError('%s of name %s: not created by this module (its description is not "%s"): another '
                              'program\'s object; choose another name. Nothing was changed'
                              % (', '.join(o if o != 'policy' else 'policy %s' % firewalld_policy.policy_name(self.name)
                                           for o in foreign), self.name, firewalld_policy.DESCRIPTION))
        before = firewalld_policy.state_view(runtime['policy'], runtime['ipsets'])
        before_p = firewalld_policy.state_view(permanent['policy'], permanent['ipsets'])
        if self.request.state == 'absent':
            self.steps = firewalld_policy.plan_absent(runtime, permanent, self.firewalld.owned_files(self.name))
            self.views = (before, EMPTY, (before_p, EMPTY))
        elif self.request.state == 'reverted':
            self.steps = firewalld_policy.plan_revert(self.name, runtime, permanent)
            removed = [s.path.split('/', 1)[1][:-4] for s in self.steps if s.kind == 'remove_file']
            after = firewalld_policy.state_view(None if firewalld_policy.policy_name(self.name) in removed else permanent['policy'],
                                                dict((n, s) for n, s in permanent['ipsets'].items() if n not in removed))
            self.views = (before, after, (before_p, after))
        else:
            self.steps = firewalld_policy.plan_present(self.desired, runtime, permanent, self.permanent)
            after = firewalld_policy.desired_view(self.desired)
            if not self.permanent:
                # The runtime cannot delete an ipset: a stale one stays, empty and unused, until a reload.
                for stale in set(runtime['ipsets']) | set(permanent['ipsets']):
                    after['ipsets'].setdefault(stale, [])
            self.views = (before, after, (before_p, after) if self.permanent else None)
        return {'changed': bool(self.steps)}

    def files(self):
        """Every file the change may write: the XML of the owned and the desired policy and ipsets, each with
        firewalld's ``.old`` backup."""
        objects = set(self.firewalld.owned_files(self.name))
        if self.desired:
            objects.add('policies/%s.xml' % self.desired['policy'])
            objects.update('ipsets/%s.xml' % ipset for ipset in self.desired['ipsets'])
        paths = set()
        for path in objects:
            path = os.path.join(self.firewalld.config_dir, path[:-4] if path.endswith('.old') else path)
            paths.update((path, path + '.old'))
        return sorted(paths)

    def reload_commands(self):
        """What loads restored files: egress_revert's firewalld reload for this name's policy."""
        # A reload that keeps other tools' runtime-only rich rules; our own policy's are the change being undone.
        return [[egress_revert.FIREWALLD_RELOAD, firewalld_policy.policy_name(self.name)]]

    def spec_for(self, record):
        """The restore spec of a pending record: the files of its name's objects (and their .old backups) under
        /etc/firewalld's policies/ and ipsets/, whatever else the record names."""
        name = record.get('name')
        paths = set(self.files()) if name == self.name else set()
        for path in record['files']:
            directory, filename = os.path.split(path)
            if os.path.dirname(directory) == self.firewalld.config_dir and os.path.basename(directory) in (
                    'policies', 'ipsets') and isinstance(name, str) and firewalld_policy.owned_file(name, filename):
                paths.add(path)
        return {'files': sorted(paths), 'shared': [], 'reload': self.reload_commands()}

    def _split(self):
        """(apply's steps, commit's steps) of the plan: the permanent layer's in-place changes wait for the commit.

        New or stale objects (file writes and one reload) go in at once, complete: firewalld cannot create them in
        the runtime only, and one reload of complete files is the cheapest way to a first apply (the pending record
        holds the files as they were, so a restore, the dead-man and the boot check take them back). In-place changes
        go to the runtime first - verification judges it - and to the permanent configuration at the commit.
        """
        later = [s for s in self.steps if getattr(s, 'layer', None) == 'permanent']
        return [s for s in self.steps if getattr(s, 'layer', None) != 'permanent'], later

    def apply(self):
        """Carry out the steps that go in at once (_split): file writes, reload, runtime changes."""
        now = self._split()[0]
        if now:
            self.firewalld.transaction(self.name, now)

    def commit(self):
        """Carry out the permanent layer's in-place changes, after the runtime passed the verification (_split)."""
        later = self._split()[1]
        if later:
            self.firewalld.transaction(self.name, later)


def describe_step(step):
    """A planned step as a list of words, for check mode's ``commands``."""
    if step.kind in ('write_file', 'remove_file'):
        return [step.kind.split('_')[0], os.path.join('/etc/firewalld', step.path)]
    if step.kind == 'set_entries':
        return [step.kind, step.layer, step.ipset] + list(step.entries)
    if step.kind in ('add_rules', 'remove_rules'):
        return [step.kind, step.layer, step.policy] + list(step.rules)
    return [step.kind]


def result(backend, check_mode, diff):
    """The module's result once the transaction is done: what changed, the objects, the commands, the diff."""
    before, after, permanent_views = backend.views
    added, removed = egress_applied.rule_changes(firewalld_policy.allow_list(before, backend.name), firewalld_policy.allow_list(after, backend.name))
    firewalld_added, firewalld_removed = firewalld_policy.summarize(before, after)
    out = dict(changed=bool(backend.steps), added=added, removed=removed, firewalld_added=firewalld_added,
               firewalld_removed=firewalld_removed, ipsets=sorted(after['ipsets']),
               rich_rules=sorted(after['policy']['rich_rules']) if after['policy'] else [],
               reloaded=any(s.kind == 'reload' for s in backend.steps),
               commands=[describe_step(s) for s in backend.steps] if check_mode else [list(c) for c in backend.firewalld.commands])
    if diff:
        out['diff'] = [dict(before=before, after=after, before_header='firewalld runtime', after_header='firewalld runtime')]
        if permanent_views:
            out['diff'].append(dict(before=permanent_views[0], after=permanent_views[1],
                                    before_header='firewalld permanent', after_header='firewalld permanent'))
    return out
