# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan and apply ufw egress rules: ufw's lock, backup, files, iptables-restore, rollback, and state=reverted.

The text work is in ufw_rules; this file does the I/O. egress_transaction runs the change (UfwBackend) under the
host-wide lock; revert_with_host_lock() takes the same lock for state=reverted. Commands run through a
``run(argv, data=None)`` callable returning ``(rc, stdout, stderr)`` (AnsibleModule.run_command fits), and every
path hangs off ``root``, so the whole transaction, rollback included, runs in the unit tests on real files in a
temporary directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_revert, egress_transaction, ufw_rules

# How long to wait for ufw's own lock, which only a ufw command holds (for as long as it runs).
UFW_LOCK_TIMEOUT = 120.0
FAMILY_FILES = {'ipv4': 'etc/ufw/user.rules', 'ipv6': 'etc/ufw/user6.rules'}
RESTORE = {'ipv4': 'iptables-restore', 'ipv6': 'ip6tables-restore'}
# In the backup directory: the digests of the files as the last successful change left them. Its presence means
# "the backup is the state before that change", which is what state=reverted puts back.
APPLIED = 'applied.json'
MODULE = 'tunnelwall.cloudflared.ufw_egress'  # the state file's marker


class UfwError(Exception):
    """A failure with a message for the user; ``details`` go into the module's result."""

    def __init__(self, message, **details):
        super(UfwError, self).__init__(message)
        self.details = details


class UfwPaths(object):
    """Where ufw keeps what this module reads and writes, below ``root`` (``/`` on a real host)."""

    def __init__(self, name, root='/', backup_dir=None):
        self.root = root

        def at(relative):
            return os.path.join(root, relative)
        self.conf = at('etc/ufw/ufw.conf')
        self.defaults = at('etc/default/ufw')
        self.rules = dict((family, at(path)) for family, path in FAMILY_FILES.items())
        # `ufw default` rewrites these (log prefixes), so they are part of what a rollback restores.
        self.after = (at('etc/ufw/after.rules'), at('etc/ufw/after6.rules'))
        # Next to ufw's own configuration, which it describes: a restore of /etc/ufw restores it too.
        self.state = at('etc/ufw/%s-egress.json' % name)
        self.ufw_lock = at('run/ufw.lock')
        # egress_transaction's pending record, next to ufw's configuration, which it restores (a reboot keeps it,
        # as it keeps ufw's files).
        self.pending = at('etc/ufw/tunnelwall-pending.json')
        # /run: the backup belongs to this boot's live firewall, as the transaction it protects does.
        self.backup_dir = backup_dir or at('run/tunnelwall/ufw_egress/%s' % name)

    def backed_up(self):
        return self.shared() + [self.state]

    def shared(self):
        """The files every ufw user writes (`ufw allow`, fail2ban, other roles): a restore merges, never replaces."""
        return [self.rules['ipv4'], self.rules['ipv6'], self.defaults] + list(self.after)


read_text = egress_revert.read_text  # a file's text, or None when it does not exist


def write_atomic(path, text):
    """Write durably (fsynced, renamed into place, directory fsynced), keeping the mode; new files get 0640."""
    egress_revert.write_durably(path, text, None if os.path.exists(path) else 0o640)


def digest(text):
    return None if text is None else hashlib.sha256(text.encode('utf-8')).hexdigest()


def write_in_place(path, text):
    with open(path, 'w') as out:
        out.write(text)


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
                    raise UfwError("ufw's lock (%s) still held after %ds: another ufw run is stuck?" % (path, timeout))
                time.sleep(0.05)
        yield
    finally:
        handle.close()  # closing releases the lock


class UfwEgress(object):
    """One reconciliation: ``plan()`` reads and decides, ``apply()`` writes, loads and, on failure, rolls back."""

    def __init__(self, params, run, binaries, root='/', resolvers=None, backup_dir=None):
        self.params = params
        self.name = params['name']
        self.run = run
        self.binaries = binaries
        self.paths = UfwPaths(self.name, root, backup_dir)
        self.resolvers = resolvers or []
        self.warnings = []
        self.original = {}
        self.wanted = []
        self.result = {}
        self.state_text = None

    # -- reading and deciding ----------------------------------------------------------------------------------
    def read(self):
        texts = dict((path, read_text(path)) for path in self.paths.backed_up() + [self.paths.conf])
        for path in (self.paths.rules['ipv4'], self.paths.rules['ipv6'], self.paths.defaults, self.paths.conf):
            if texts[path] is None:
                raise UfwError('%s is missing: is ufw installed?' % path)
        return texts

    def remembered(self, texts):
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
        raise UfwError('%s: not a state file this module wrote; remove it if nothing else uses it' % self.paths.state)

    def plan(self):
        """Read everything under ufw's lock and work out the change; nothing is written."""
        with ufw_locked(self.paths.ufw_lock):
            texts = self.read()
        self.original = texts
        defaults = texts[self.paths.defaults]
        enabled = ufw_rules.ufw_enabled(texts[self.paths.conf])
        ipv6 = ufw_rules.ipv6_enabled(defaults)
        try:
            wanted = ufw_rules.desired_rules(self.params, self.resolvers)
            policy_before = ufw_rules.output_policy(defaults)
        except ValueError as error:
            raise UfwError(str(error))
        if not enabled and self.params['state'] == 'present' and self.params.get('on_inactive', 'fail') == 'fail':
            raise UfwError('ufw is installed but inactive (ENABLED=no in %s), so rules would protect nothing: enable it '
                           '(`ufw enable`, after allowing incoming SSH) or set on_inactive=configure to only write its files'
                           % self.paths.conf)
        missing = [RESTORE[f] for f in self.families(ipv6) if enabled and not self.binaries.get(RESTORE[f])]
        if missing:
            raise UfwError('%s not found: ufw is enabled but its iptables tools are missing' % ', '.join(missing))
        if not ipv6:
            skipped = [r for r in wanted if r.family == 'ipv6']
            if skipped:
                self.warnings.append('IPV6=no in %s: ufw does not manage IPv6, so %d IPv6 rule(s) were not written and '
                                     'IPv6 egress stays as the system leaves it' % (self.paths.defaults, len(skipped)))
            wanted = [r for r in wanted if r.family == 'ipv4']
        self.wanted = wanted
        remembered = self.remembered(texts)
        policy_after, state_after = ufw_rules.desired_policy(policy_before, self.params['default_deny'], self.params['state'],
                                                             remembered)
        added, removed, before_rules, after_rules = [], [], [], []
        for family in self.families(ipv6):
            path = self.paths.rules[family]
            try:
                before_rules += ufw_rules.owned_rules(texts[path], family, self.name, path)
                new_text, family_added, family_removed = ufw_rules.reconcile_file(texts[path], family, wanted, self.name, path)
                after_rules += ufw_rules.owned_rules(new_text, family, self.name, path)
            except ValueError as error:
                raise UfwError(str(error))
            added += family_added
            removed += family_removed
        state_text = None if state_after is None else json.dumps(dict(state_after, module=MODULE),
                                                                 sort_keys=True) + '\n'
        if state_after == remembered:
            state_text = texts[self.paths.state]
        changed = bool(added or removed or policy_after != policy_before or state_text != texts[self.paths.state])
        self.result = self.outcome(changed, added, removed, before_rules, after_rules, (policy_before, policy_after),
                                   (enabled, ipv6))
        self.state_text = state_text
        return self.result

    @staticmethod
    def families(ipv6):
        return ('ipv4', 'ipv6') if ipv6 else ('ipv4',)

    # -- applying ----------------------------------------------------------------------------------------------
    def command(self, argv, data=None, what=None):
        rc, out, err = self.run(argv, data=data)
        if rc != 0:
            raise UfwError('%s failed (rc=%d): %s' % (what or ' '.join(argv), rc, (err or out).strip()))
        return out

    def backup(self):
        """Copy every file the apply may change to the backup directory (the copy kept in memory does the rollback;
        this one is for a person after a crash)."""
        try:
            if not os.path.isdir(self.paths.backup_dir):
                os.makedirs(self.paths.backup_dir, 0o700)
            # From here on the backup describes the change being made, not the previous one.
            if os.path.exists(self.applied_path):
                os.unlink(self.applied_path)
            for path, text in self.original.items():
                target = os.path.join(self.paths.backup_dir, os.path.basename(path))
                # A file that did not exist is backed up as NAME.absent; a previous run's other form goes.
                stale, target = (target + '.absent', target) if text is not None else (target, target + '.absent')
                if os.path.exists(stale):
                    os.unlink(stale)
                write_atomic(target, text or '')
        except (IOError, OSError) as error:
            raise UfwError('cannot back up ufw files to %s: %s; nothing was changed' % (self.paths.backup_dir, error))

    def set_policy(self, policy, progress):
        # ufw rewrites /etc/default/ufw, user*.rules and after*.rules and reloads; it takes ufw's lock itself,
        # so ours must not be held here.
        progress['policy'] = True
        self.command([self.binaries['ufw'], 'default', policy, 'outgoing'], what='ufw default %s outgoing' % policy)

    def write_rules(self, enabled, ipv6, progress):
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
                    progress['loaded'].append(family)

    def apply(self):
        """Make the planned change; on any failure put every file back, reload, and raise UfwError."""
        enabled, ipv6 = self.result['ufw']['enabled'], self.result['ufw']['ipv6']
        progress = {'policy': False, 'loaded': []}
        # The rollback restores what the files hold now, had a ufw command changed them since plan().
        with ufw_locked(self.paths.ufw_lock):
            self.original = self.read()
        self.backup()
        try:
            self.change(enabled, ipv6, progress)
        except (UfwError, IOError, OSError) as error:
            problems = self.rollback(progress, enabled, ipv6)
            outcome = 'rolled back: every ufw file and the live rules are as before' if not problems else \
                'ROLLBACK INCOMPLETE: %s; the backup is in %s' % ('; '.join(problems), self.paths.backup_dir)
            raise UfwError('%s; %s' % (error, outcome), rolled_back=not problems, backup_dir=self.paths.backup_dir)
        self.record_applied()
        return dict(self.result, backup_dir=self.paths.backup_dir)

    @property
    def applied_path(self):
        return os.path.join(self.paths.backup_dir, APPLIED)

    def record_applied(self):
        """Remember what the change left, so that a revert can tell whether anything touched the files since."""
        digests = dict((path, digest(read_text(path))) for path in self.paths.backed_up())
        try:
            write_atomic(self.applied_path, json.dumps(digests, sort_keys=True) + '\n')
        except (IOError, OSError) as error:
            self.warnings.append('cannot record the change in %s (%s): state=reverted will not be able to undo it'
                                 % (self.applied_path, error))

    def backed_up_texts(self):
        texts = {}
        for path in self.paths.backed_up():
            copy = os.path.join(self.paths.backup_dir, os.path.basename(path))
            texts[path] = None if os.path.exists(copy + '.absent') else read_text(copy)
        return texts

    def revert(self, check_mode):
        """Undo the last change the module made under this name, from its backup.

        Only when ufw's files are still exactly as that change left them: otherwise something else changed them
        since, and putting the backup back would undo that too. Nothing recorded (no change since boot, or
        already reverted) means nothing to do. The caller holds the host-wide lock (revert_with_host_lock).
        """
        with ufw_locked(self.paths.ufw_lock):
            current = self.read()
        text = read_text(self.applied_path)
        enabled = ufw_rules.ufw_enabled(current[self.paths.conf])
        ipv6 = ufw_rules.ipv6_enabled(current[self.paths.defaults])
        if text is None:
            return self.revert_result(current, current, enabled, ipv6, changed=False)
        try:
            recorded = json.loads(text)
        except ValueError:
            raise UfwError('%s is not a record this module wrote; nothing was reverted' % self.applied_path)
        touched = sorted(path for path in self.paths.backed_up() if digest(current[path]) != recorded.get(path))
        if touched:
            raise UfwError('not reverting: %s changed since the last ufw_egress run (name=%s); putting the backup '
                           'in %s back would undo that too' % (', '.join(touched), self.name, self.paths.backup_dir))
        backup = self.backed_up_texts()
        if any(backup[path] is None for path in (self.paths.rules['ipv4'], self.paths.rules['ipv6'], self.paths.defaults)):
            raise UfwError('the backup in %s is incomplete; nothing was reverted' % self.paths.backup_dir)
        result = self.revert_result(current, backup, enabled, ipv6, changed=True)
        if check_mode:
            return result
        self.original = backup
        policy_changed = result['policy']['before'] != result['policy']['after']
        progress = {'policy': policy_changed, 'loaded': list(self.families(ipv6))}
        problems = self.rollback(progress, enabled, ipv6)
        if problems:
            raise UfwError('revert incomplete: %s; the backup is in %s' % ('; '.join(problems), self.paths.backup_dir),
                           backup_dir=self.paths.backup_dir)
        os.unlink(self.applied_path)
        return dict(result, backup_dir=self.paths.backup_dir)

    def revert_result(self, current, target, enabled, ipv6, changed):
        """The result of a revert from ``current`` to ``target`` (both: path -> text), in the form plan() gives."""
        def owned(texts):
            rules = []
            for family in self.families(ipv6):
                path = self.paths.rules[family]
                rules += ufw_rules.owned_rules(texts[path], family, self.name, path)
            return rules
        try:
            before_rules, after_rules = owned(current), owned(target)
            policy_before = ufw_rules.output_policy(current[self.paths.defaults])
            policy_after = ufw_rules.output_policy(target[self.paths.defaults])
        except ValueError as error:
            raise UfwError(str(error))
        added = [r for r in after_rules if r not in before_rules]
        removed = [r for r in before_rules if r not in after_rules]
        return self.outcome(changed, added, removed, before_rules, after_rules, (policy_before, policy_after),
                            (enabled, ipv6))

    def outcome(self, changed, added, removed, before_rules, after_rules, policies, ufw_state):
        """The module's result: what changes, the owned rules and the policy before and after, as a diff too."""
        header = 'ufw egress rules of %s' % self.name
        return {
            'changed': changed,
            'added': [ufw_rules.rule_dict(r) for r in added],
            'removed': [ufw_rules.rule_dict(r) for r in removed],
            'policy': {'before': policies[0], 'after': policies[1]},
            'rule_count': len(after_rules),
            'ufw': {'enabled': ufw_state[0], 'ipv6': ufw_state[1]},
            'diff': {'before_header': header, 'after_header': header,
                     'before': ufw_rules.diff_text(before_rules, policies[0]),
                     'after': ufw_rules.diff_text(after_rules, policies[1])},
        }

    def change(self, enabled, ipv6, progress):
        before, after = self.result['policy']['before'], self.result['policy']['after']
        # Opening up (putting allow back) goes first and denying goes last, so no moment has the deny without
        # the allowances. Established connections, such as this SSH session, pass either way: ufw's
        # before*.rules accept RELATED,ESTABLISHED output ahead of every rule and policy.
        # The state file names the policy to give back: it is written (durably) before the policy it records is
        # replaced, so a run killed in between never leaves a deny that state=absent cannot undo.
        if self.state_text != self.original[self.paths.state] and self.state_text is not None:
            egress_revert.write_durably(self.paths.state, self.state_text)
        if after != before and after == 'allow':
            self.set_policy(after, progress)
        self.write_rules(enabled, ipv6, progress)
        if after != before and after != 'allow':
            self.set_policy(after, progress)
        if self.state_text is None and self.original[self.paths.state] is not None:
            os.unlink(self.paths.state)

    def rollback(self, progress, enabled, ipv6):
        """Put back every file that differs from the copy read at the start; reload what was loaded."""
        problems = []
        for path, text in self.original.items():
            try:
                if read_text(path) == text:
                    continue
                if text is None:
                    os.unlink(path)
                else:
                    write_in_place(path, text)
            except (IOError, OSError) as error:
                problems.append('restoring %s: %s' % (path, error))
        if not enabled:
            return problems
        try:
            if progress['policy']:
                # `ufw default` reloaded everything; only a full reload puts its chains back as they were.
                self.command([self.binaries['ufw'], 'reload'])
            else:
                for family in progress['loaded']:
                    if family in self.families(ipv6):
                        self.command([self.binaries[RESTORE[family]], '-n', self.paths.rules[family]])
        except UfwError as error:
            problems.append(str(error))
        return problems


class UfwBackend(object):
    """ufw_apply's job as an egress_transaction backend: ufw has no runtime layer, so commit has nothing to do."""

    def __init__(self, job):
        self.job = job
        self.record_path = job.paths.pending

    def plan(self):
        return self.job.plan()

    def files(self):
        return self.job.paths.backed_up()

    def shared_files(self):
        return self.job.paths.shared()

    def reload_commands(self):
        # ufw reload loads every file back into the live rules; an inactive ufw has nothing live to reload. Read
        # now, not from the plan: a restore of what an earlier run left pending comes before this run's plan.
        enabled = ufw_rules.ufw_enabled(read_text(self.job.paths.conf) or '')
        return [[self.job.binaries['ufw'], 'reload']] if enabled and self.job.binaries.get('ufw') else []

    def spec_for(self, record):
        """The restore spec of a pending record: ufw's shared files and the state file of the record's name."""
        name = record.get('name')
        paths = UfwPaths(name if isinstance(name, str) and ufw_rules.TAG_PART_RE.match(name) else self.job.name,
                         self.job.paths.root)
        return {'files': sorted(paths.backed_up()), 'shared': sorted(paths.shared()), 'reload': self.reload_commands()}

    def apply(self):
        self.job.result = self.job.apply()

    def commit(self):
        pass


def revert_with_host_lock(job, request, check_mode, command, which=None, run_dir=egress_transaction.RUN_DIR):
    """state=reverted: ``job.revert()`` under the host-wide lock of every egress change, as a transaction runs.

    It waits up to ``request.lock_timeout`` for a running transaction to end and first restores what a dead one left
    pending, as every transaction does. Check mode takes no lock, as egress_transaction.run() takes none. Returns
    the revert's result with ``transaction`` added.
    """
    info = egress_transaction.transaction_info(request)
    if check_mode:
        return dict(job.revert(check_mode=True), transaction=info)
    with egress_transaction.host_locked(request, job.paths.pending, info, command, which, run_dir, UfwBackend(job)):
        return dict(job.revert(check_mode=False), transaction=info)
