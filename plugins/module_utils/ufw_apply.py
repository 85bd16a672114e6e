# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ufw_egress's change as an egress_transaction backend: a Request in, ufw's files and live rules out.

``UfwBackend(request, nameservers, ...)`` renders the validated Request (ufw_rules.render), plans under ufw's lock,
writes the files and loads them. egress_transaction owns everything else - the host-wide lock, the pending record,
the dead-man, the restore of a failed run and state=reverted. Commands run through a ``run(argv, data=None)``
callable returning ``(rc, stdout, stderr)`` (AnsibleModule.run_command fits), and every path hangs off ``root``, so
the whole transaction, restore included, runs in the unit tests on real files in a temporary directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import json
import os
import time

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import (
    backend_choice, egress_applied, egress_contract, egress_revert, ufw_rules)
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_transaction import EgressError

# How long to wait for ufw's own lock, which only a ufw command holds (for as long as it runs).
UFW_LOCK_TIMEOUT = 120.0
RESTORE = {'ipv4': 'iptables-restore', 'ipv6': 'ip6tables-restore'}
MODULE = 'tunnelwall.cloudflared.ufw_egress'  # the state file's marker


class UfwPaths(object):
    """Where ufw keeps what this module reads and writes, below ``root`` (``/`` on a real host)."""

    def __init__(self, name, root='/'):
        self.root = root

        def at(relative):
            """``relative`` (a path without its leading /) below ``root``."""
            return os.path.join(root, relative)
        self.conf = at(backend_choice.UFW_CONF.lstrip('/'))
        self.defaults = at(egress_revert.UFW_DEFAULTS)
        self.rules = dict((family, at(path)) for family, path in egress_revert.UFW_RULES.items())
        # Next to ufw's own configuration, which it describes: a restore of /etc/ufw restores it too.
        self.state = at(egress_revert.UFW_STATE % name)
        self.ufw_lock = at('run/ufw.lock')
        # egress_transaction's pending record, next to ufw's configuration, which it restores (a reboot keeps it,
        # as it keeps ufw's files).
        self.pending = at(dict(egress_revert.BOOT_RECORDS)['ufw'])

    def files(self):
        """Every file a change may write (what the pending record keeps)."""
        return self.shared() + [self.state]

    def shared(self):
        """The files every ufw user writes (`ufw allow`, fail2ban, other roles): a restore merges, never replaces."""
        return [os.path.join(self.root, path) for path in egress_revert.UFW_SHARED]


read_text = egress_revert.read_text  # a file's text, or None when it does not exist


def write_atomic(path, text):
    """Write durably (fsynced, renamed into place, directory fsynced), keeping the mode; new files get 0640."""
    egress_revert.write_durably(path, text, None if os.path.exists(path) else 0o640)


@contextlib.contextmanager
def ufw_locked(path, timeout=UFW_LOCK_TIMEOUT):
    """ufw's own lock (/run/ufw.lock, taken with fcntl.lockf as ufw does), waited for up to ``timeout`` seconds.

    It keeps a ufw command from rewriting the files while they are read or written here. Runs of the firewall
    modules take turns on egress_transaction's host-wide lock instead.
    """
    handle = open(path, 'a')
    deadline = time.time() + timeout
    try:
        while True:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES) or time.time() > deadline:
                    raise EgressError("ufw's lock (%s) still held after %ds: another ufw run is stuck?" % (path, timeout))
                time.sleep(0.05)
        yield
    finally:
        handle.close()  # closing releases the lock


class UfwBackend(object):
    """One reconciliation of ufw with a Request: ``plan()`` reads and decides, ``apply()`` writes and loads.

    ufw has no runtime layer, so ``commit()`` has nothing to do; a failed ``apply()`` raises and leaves the restore
    to the transaction.
    """

    def __init__(self, request, nameservers, run, binaries, on_inactive='fail', root='/'):
        self.request = request
        self.name = request.name
        self.run = run
        self.binaries = binaries
        self.on_inactive = on_inactive
        self.paths = UfwPaths(self.name, root)
        self.record_path = self.paths.pending
        self.wanted = ufw_rules.render(request, nameservers)
        self.warnings = []
        self.original = {}
        self.result = {}
        self.state_text = None
        # What apply() has done so far (None: not started): the restore reloads only what needs it.
        self.progress = None

    # -- reading and deciding ----------------------------------------------------------------------------------
    def read(self):
        """The text of every file the change may write and of ufw.conf (None: missing), read under ufw's lock; raise
        EgressError when a file ufw itself needs is missing."""
        with ufw_locked(self.paths.ufw_lock):
            texts = dict((path, read_text(path)) for path in self.paths.files() + [self.paths.conf])
        for path in (self.paths.rules['ipv4'], self.paths.rules['ipv6'], self.paths.defaults, self.paths.conf):
            if texts[path] is None:
                raise EgressError('%s is missing: is ufw installed?' % path)
        return texts

    def remembered(self, texts):
        """The state file's content as {'original_policy', 'set_policy'}, or None without one; raise EgressError for a file
        of that name this module did not write (it is not overwritten)."""
        text = texts[self.paths.state]
        if text is None:
            return None
        try:
            state = json.loads(text)
            if state.get('module') != MODULE:
                raise KeyError('module')  # not our marker: someone else's file of that name
            if state['original_policy'] in ufw_rules.POLICY_TARGETS and state['set_policy'] in ufw_rules.POLICY_TARGETS:
                return {'original_policy': state['original_policy'], 'set_policy': state['set_policy']}
        except (ValueError, KeyError, TypeError):
            pass
        raise EgressError('%s: not a state file this module wrote; remove it if nothing else uses it' % self.paths.state)

    def plan(self):
        """Read everything under ufw's lock and work out the change; nothing is written."""
        texts = self.original = self.read()
        enabled = ufw_rules.ufw_enabled(texts[self.paths.conf])
        ipv6 = ufw_rules.ipv6_enabled(texts[self.paths.defaults])
        if not enabled and self.request.state == 'present' and self.on_inactive == 'fail':
            raise EgressError('ufw is installed but inactive (ENABLED=no in %s), so rules would protect nothing: enable it '
                              '(`ufw enable`, after allowing incoming SSH) or set on_inactive=configure to only write its files'
                              % self.paths.conf)
        missing = [RESTORE[f] for f in self.families(ipv6) if enabled and not self.binaries.get(RESTORE[f])]
        if missing:
            raise EgressError('%s not found: ufw is enabled but its iptables tools are missing' % ', '.join(missing))
        skipped = [r for r in self.wanted if r.family not in self.families(ipv6)]
        if skipped:
            self.warnings.append('IPV6=no in %s: ufw does not manage IPv6, so %d IPv6 rule(s) were not written and '
                                 'IPv6 egress stays as the system leaves it' % (self.paths.defaults, len(skipped)))
            self.wanted = [r for r in self.wanted if r.family == 'ipv4']
        remembered = self.remembered(texts)
        policy_before = self.policy(texts)
        policy_after, state_after = ufw_rules.desired_policy(policy_before, self.request.default_deny, self.request.state,
                                                             remembered)
        target = dict(texts)
        for family in self.families(ipv6):
            target[self.paths.rules[family]] = self.reconcile(texts, family)
        self.state_text = texts[self.paths.state] if state_after == remembered else (
            None if state_after is None else json.dumps(dict(state_after, module=MODULE), sort_keys=True) + '\n')
        target[self.paths.state] = self.state_text
        self.result = self.compare(texts, target, policy_after)
        return self.result

    def reconcile(self, texts, family):
        """The new text of ``family``'s user*.rules in ``texts``: this name's rules replaced by the wanted ones, the rest kept."""
        path = self.paths.rules[family]
        try:
            return ufw_rules.reconcile_file(texts[path], family, self.wanted, self.name, path)[0]
        except ValueError as error:
            raise EgressError(str(error))

    def policy(self, texts):
        """The outgoing policy word of /etc/default/ufw in ``texts``; a value ufw would not write is an EgressError."""
        try:
            return ufw_rules.output_policy(texts[self.paths.defaults])
        except ValueError as error:
            raise EgressError(str(error))

    def compare(self, current, target, policy_after=None):
        """The module's result for ufw's files going from ``current`` to ``target`` (path -> text): what changes, the
        owned rules and the outgoing policy before and after, as a diff too."""
        enabled = ufw_rules.ufw_enabled(current.get(self.paths.conf) or read_text(self.paths.conf) or '')
        ipv6 = ufw_rules.ipv6_enabled(current[self.paths.defaults] or '')
        policies = (self.policy(current), policy_after or self.policy(target))
        rules = ([], [])
        for family in self.families(ipv6):
            path = self.paths.rules[family]
            for side, texts in enumerate((current, target)):
                try:
                    rules[side].extend(ufw_rules.owned_rules(texts[path], family, self.name, path))
                except ValueError as error:
                    raise EgressError(str(error))
        added, removed = egress_applied.rule_changes([ufw_rules.applied_rule(r) for r in rules[0]],
                                                     [ufw_rules.applied_rule(r) for r in rules[1]])
        changed = bool(added or removed or policies[0] != policies[1] or current[self.paths.state] != target[self.paths.state])
        header = 'ufw egress rules of %s' % self.name
        return {
            'changed': changed,
            'added': added,
            'removed': removed,
            'policy': {'before': policies[0], 'after': policies[1]},
            'rule_count': len(rules[1]),
            'ufw': {'enabled': enabled, 'ipv6': ipv6},
            'diff': {'before_header': header, 'after_header': header,
                     'before': ufw_rules.diff_text(rules[0], policies[0]),
                     'after': ufw_rules.diff_text(rules[1], policies[1])},
        }

    @staticmethod
    def families(ipv6):
        """The address families ufw manages: both, or only ipv4 unless /etc/default/ufw says IPV6=yes."""
        return egress_contract.FAMILIES if ipv6 else ('ipv4',)

    # -- applying ----------------------------------------------------------------------------------------------
    def command(self, argv, data=None, what=None):
        """Run ``argv`` (``data`` on stdin) and return its stdout; a non-zero exit is an EgressError naming ``what`` (or the command)."""
        rc, out, err = self.run(argv, data=data)
        if rc != 0:
            raise EgressError('%s failed (rc=%d): %s' % (what or ' '.join(argv), rc, (err or out).strip()))
        return out

    def set_policy(self, policy):
        """``ufw default POLICY outgoing``, noted in ``progress`` first: after it only ufw's full reload restores the live rules."""
        # ufw rewrites /etc/default/ufw, user*.rules and after*.rules and reloads; it takes ufw's lock itself,
        # so ours must not be held here.
        self.progress['policy'] = True
        self.command([self.binaries['ufw'], 'default', policy, 'outgoing'], what='ufw default %s outgoing' % policy)

    def write_rules(self, enabled, ipv6):
        """Reconcile the files again under ufw's lock (`ufw default` may have rewritten them), test, write, load."""
        with ufw_locked(self.paths.ufw_lock):
            texts = {}
            for family in self.families(ipv6):
                path = self.paths.rules[family]
                current = read_text(path)
                texts[family] = ufw_rules.reconcile_file(current, family, self.wanted, self.name, path)[0]
                if texts[family] == current:
                    del texts[family]
            if enabled:
                # iptables-restore --test asks the kernel too: a rule it would reject (say, a hand-written line of
                # the user's referring to a missing set) fails here, before anything changes.
                for family, text in texts.items():
                    self.command([self.binaries[RESTORE[family]], '-n', '--test'], data=text,
                                 what='%s --test of the new %s' % (RESTORE[family], self.paths.rules[family]))
            for family, text in texts.items():
                write_atomic(self.paths.rules[family], text)
            if enabled:
                for family in texts:
                    # -n: flush and refill only the chains user*.rules declares, in one transaction, as ufw does
                    # itself; a failed restore changed nothing, so only the families loaded need loading again.
                    self.command([self.binaries[RESTORE[family]], '-n', self.paths.rules[family]])
                    self.progress['loaded'].append(family)

    def apply(self):
        """Make the planned change; raise EgressError (the transaction restores) on any failure."""
        enabled, ipv6 = self.result['ufw']['enabled'], self.result['ufw']['ipv6']
        before, after = self.result['policy']['before'], self.result['policy']['after']
        self.progress = {'policy': False, 'loaded': []}
        original_state = read_text(self.paths.state)
        # Opening up (putting allow back) goes first and denying goes last, so no moment has the deny without
        # the allowances. Established connections, such as this SSH session, pass either way: ufw's
        # before*.rules accept RELATED,ESTABLISHED output ahead of every rule and policy.
        # The state file names the policy to give back: it is written (durably) before the policy it records is
        # replaced, so a run killed in between never leaves a deny that state=absent cannot undo.
        if self.state_text != original_state and self.state_text is not None:
            egress_revert.write_durably(self.paths.state, self.state_text)
        if after != before and after == 'allow':
            self.set_policy(after)
        self.write_rules(enabled, ipv6)
        if after != before and after != 'allow':
            self.set_policy(after)
        if self.state_text is None and original_state is not None:
            os.unlink(self.paths.state)

    def commit(self):
        """Nothing to do: ufw's files hold the change once written, there is no runtime-only layer to make permanent."""

    # -- what the transaction needs to restore -----------------------------------------------------------------
    def files(self):
        """Every file the change may write, for the transaction's record (UfwPaths.files)."""
        return self.paths.files()

    def shared_files(self):
        """The files ufw and its users write too (UfwPaths.shared): a restore merges them rather than replacing them."""
        return self.paths.shared()

    def reload_commands(self):
        """What loads restored files into the live rules: ufw's full reload - or, after a failed apply(), only what
        it had loaded (nothing when it failed before loading anything). An inactive ufw has nothing live to reload.

        Read now, not from the plan: a restore of what an earlier run left pending comes before this run's plan.
        """
        if not self.live():
            return []
        if self.progress is None or self.progress['policy']:
            # `ufw default` reloaded everything; only a full reload puts its chains back as they were.
            return [[self.binaries['ufw'], 'reload']]
        return [[self.binaries[RESTORE[family]], '-n', self.paths.rules[family]] for family in self.progress['loaded']]

    def spec_for(self, record):
        """The restore spec of a pending record: ufw's shared files and the state file of the record's name."""
        name = record.get('name')
        paths = UfwPaths(name if isinstance(name, str) and egress_revert.NAME_RE.match(name) else self.name,
                         self.paths.root)
        return {'files': sorted(paths.files()), 'shared': sorted(paths.shared()),
                'reload': [[self.binaries['ufw'], 'reload']] if self.live() else []}

    def live(self):
        """True when ufw is enabled (its rules are live) and can reload them."""
        return ufw_rules.ufw_enabled(read_text(self.paths.conf) or '') and bool(self.binaries.get('ufw'))
