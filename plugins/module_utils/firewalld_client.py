# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""firewalld_egress's I/O: read firewalld's state over D-Bus, carry out a plan of steps, roll back on failure.

Commands run through a ``run(argv)`` callable returning ``(rc, stdout, stderr)`` (AnsibleModule.run_command fits),
and the configuration directory is a parameter, so the unit tests drive the whole transaction with a fake firewalld.

Why these tools: ``dbus-send`` (part of D-Bus, which firewalld needs) reads state and replaces ipset entries in a few
milliseconds, where each ``firewall-cmd`` costs about 0.2 s of Python start-up. Rich rules of a policy can only be
changed through firewall-cmd (D-Bus wants a dict of variants dbus-send cannot encode), batched: one call adds many,
another removes many (firewall-cmd refuses both in one call). Policies and ipsets can only be created in the
permanent configuration; this module writes their XML files, firewalld's own format, and reloads once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_revert
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_transaction import EgressError
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import firewalld_policy

BUS = 'org.fedoraproject.FirewallD1'
PATH = '/org/fedoraproject/FirewallD1'
CONFIG_PATH = PATH + '/config'


# ----------------------------------------------------------------------------------------------------------------
# reading firewalld's answers
# ----------------------------------------------------------------------------------------------------------------
class _DbusReply:
    """A parser of ``dbus-send --print-reply`` output: strings, numbers, booleans, object paths, variants,
    arrays, dict entries and structs, nested. dbus-send prints strings unescaped, so a string is
    everything between the first and the last double quote of its line."""

    def __init__(self, text):
        self.lines = [line.strip() for line in text.splitlines() if line.strip()]
        if self.lines and self.lines[0].startswith('method return'):
            self.lines.pop(0)
        self.pos = 0

    def values(self):
        """Every top-level value of the reply, in order."""
        values = []
        while self.pos < len(self.lines):
            values.append(self.value(self.take()))
        return values

    def take(self):
        """The next line of the reply (consumed)."""
        line = self.lines[self.pos]
        self.pos += 1
        return line

    def value(self, line):
        """The value ``line`` starts, reading the lines of a container or dict entry it opens; ValueError for a type
        this parser does not know."""
        if line.startswith('variant'):
            return self.value(line[len('variant'):].strip())
        if line.startswith('array ['):
            return self.container(line, ']', 'array [')
        if line.startswith('struct {'):
            return tuple(self.container(line, '}', 'struct {'))
        if line.startswith('dict entry('):
            key = self.value(self.take())
            value = self.value(self.take())
            closing = self.take()
            if closing != ')':
                raise ValueError('dbus-send output: expected ")" after a dict entry, got %r' % closing)
            return (key, value)
        kind, dummy, rest = line.partition(' ')
        if kind in ('string', 'object') or line.startswith('object path'):
            return rest[rest.index('"') + 1:rest.rindex('"')]
        if kind == 'boolean':
            return rest == 'true'
        if kind in ('int16', 'int32', 'int64', 'uint16', 'uint32', 'uint64', 'byte'):
            return int(rest)
        if kind == 'double':
            return float(rest)
        raise ValueError('dbus-send output: cannot read %r' % line)

    def container(self, line, closer, opener):
        """Items up to the closing line; an array made only of dict entries becomes a dict."""
        items = []
        dict_entries = 0
        if line[len(opener):].strip() == closer:
            return items
        while True:
            line = self.take()
            if line == closer:
                break
            dict_entries += line.startswith('dict entry(')
            items.append(self.value(line))
        if opener == 'array [' and items and dict_entries == len(items):
            return dict(items)
        return items


def parse_dbus_reply(text):
    """The first value of a ``dbus-send --print-reply`` answer (arrays of dict entries become dicts)."""
    values = _DbusReply(text).values()
    return values[0] if values else None


def policy_from_settings(settings):
    """getPolicySettings / config.policy.getSettings (a dict) -> the parts the module compares."""
    return {'target': settings.get('target', 'CONTINUE'), 'rich_rules': list(settings.get('rich_rules') or []),
            'description': settings.get('description', ''),
            'ingress_zones': list(settings.get('ingress_zones') or []), 'egress_zones': list(settings.get('egress_zones') or [])}


def ipset_from_settings(settings):
    """getIPSetSettings / config.ipset.getSettings (version, short, description, type, options, entries) -> a dict."""
    options = settings[4] if isinstance(settings[4], dict) else {}
    return {'type': settings[3], 'family': options.get('family', 'inet'), 'entries': list(settings[5]),
            'description': settings[2]}


class Firewalld(object):
    """A firewalld reached through ``run``; ``config_dir`` is /etc/firewalld on a real host."""

    # Linux limits one argument of a command to 128 KiB (MAX_ARG_STRLEN; more is E2BIG, the command never starts):
    # an ipset whose setEntries argument would be longer than this - about 3,500 IPv4 /24s - is loaded from files.
    max_argument = 64 * 1024

    def __init__(self, run, config_dir='/etc/firewalld'):
        self.run = run
        self.config_dir = config_dir
        self.commands = []    # every changing command, in order, for the module's result
        self._paths = {}
        self._name = None     # the name whose transaction runs: its own policy's runtime rules are not kept

    # ------------------------------------------------------------------------------------------------------------
    # commands
    # ------------------------------------------------------------------------------------------------------------
    def dbus(self, path, method, *args):
        """Call ``method`` on firewalld's object ``path`` with dbus-send and return the parsed reply; a failure is a
        EgressError, with ``cannot_start`` set when dbus-send itself did not run."""
        argv = ['dbus-send', '--system', '--print-reply', '--reply-timeout=120000', '--dest=' + BUS, path, method] + list(args)
        rc, out, err = self.run(argv)
        if rc != 0:
            # rc 126/127 with "cannot run": dbus-send itself did not start (egress_module.command_runner).
            error = EgressError('%s: %s' % (method.rsplit('.', 1)[-1], (err or out).strip()))
            error.cannot_start = rc in (126, 127) and (err or '').startswith('cannot run')
            raise error
        return parse_dbus_reply(out)

    def firewall_cmd(self, args):
        """Run ``firewall-cmd ARGS`` (noted in ``commands``) and return its stdout; a failure is an EgressError."""
        argv = ['firewall-cmd'] + args
        self.commands.append(argv)
        rc, out, err = self.run(argv)
        if rc != 0:
            command = args[0] if len(args) == 1 else ' '.join(args[:2])
            raise EgressError('firewall-cmd %s failed (rc=%s): %s' % (command, rc, (err or out).strip()))
        return out

    def changing_dbus(self, path, method, *args):
        """dbus() for a call that changes firewalld: noted in ``commands`` first, for the module's result."""
        self.commands.append(['dbus-send', path, method] + list(args))
        return self.dbus(path, method, *args)

    # ------------------------------------------------------------------------------------------------------------
    # reading
    # ------------------------------------------------------------------------------------------------------------
    def state(self):
        """firewalld's state (RUNNING when usable) and version; a clear error when it cannot be asked."""
        try:
            state = self.dbus(PATH, 'org.freedesktop.DBus.Properties.Get', 'string:' + BUS, 'string:state')
            version = self.dbus(PATH, 'org.freedesktop.DBus.Properties.Get', 'string:' + BUS, 'string:version')
        except EgressError as error:
            if getattr(error, 'cannot_start', False):
                raise EgressError('%s: install D-Bus\'s tools (dbus-bin or dbus-tools)' % error)
            raise EgressError('firewalld is not running or cannot be reached over D-Bus (%s); start it, '
                              'e.g. systemctl start firewalld' % error)
        except OSError as error:
            raise EgressError('cannot run dbus-send (%s): install D-Bus\'s tools (dbus-bin or dbus-tools)' % error)
        if state != 'RUNNING':
            raise EgressError('firewalld is not running (state %s)' % state)
        return state, version

    def read(self, name, permanent):
        """The owned objects of one layer: {'policy': None or dict, 'ipsets': {name: dict}}."""
        policy_name = firewalld_policy.policy_name(name)
        if permanent:
            policies = self.dbus(CONFIG_PATH, BUS + '.config.getPolicyNames')
            ipsets = self.dbus(CONFIG_PATH, BUS + '.config.getIPSetNames')
        else:
            policies = self.dbus(PATH, BUS + '.policy.getPolicies')
            ipsets = self.dbus(PATH, BUS + '.ipset.getIPSets')
        layer = {'policy': None, 'ipsets': {}}
        if policy_name in policies:
            if permanent:
                settings = self.dbus(self._config_path('Policy', policy_name), BUS + '.config.policy.getSettings')
            else:
                settings = self.dbus(PATH, BUS + '.policy.getPolicySettings', 'string:' + policy_name)
            layer['policy'] = policy_from_settings(settings)
        for ipset in firewalld_policy.owned_ipsets(name, ipsets):
            if permanent:
                settings = self.dbus(self._config_path('IPSet', ipset), BUS + '.config.ipset.getSettings')
            else:
                settings = self.dbus(PATH, BUS + '.ipset.getIPSetSettings', 'string:' + ipset)
            layer['ipsets'][ipset] = ipset_from_settings(settings)
        return layer

    def _config_path(self, kind, obj):
        if (kind, obj) not in self._paths:
            self._paths[(kind, obj)] = self.dbus(CONFIG_PATH, '%s.config.get%sByName' % (BUS, kind), 'string:' + obj)
        return self._paths[(kind, obj)]

    def owned_files(self, name):
        """Relative paths of this module's files (and firewalld's .xml.old backups of them) under config_dir."""
        found = []
        for kind in ('policies', 'ipsets'):
            directory = os.path.join(self.config_dir, kind)
            if os.path.isdir(directory):
                found += ['%s/%s' % (kind, f) for f in sorted(os.listdir(directory)) if firewalld_policy.owned_file(name, f)]
        return found

    # ------------------------------------------------------------------------------------------------------------
    # changing
    # ------------------------------------------------------------------------------------------------------------
    def apply(self, steps, name=None):
        """Carry out a plan's ``steps`` in order (each by its ``_step_KIND`` method); ``name``: whose reload keeps no
        runtime-only rules of its own policy."""
        self._name = name
        for step in steps:
            getattr(self, '_step_' + step.kind)(*step[1:])

    def _step_write_file(self, path, content):
        """Write a Policy or IpSet (firewalld_policy's data) as firewalld's XML file, atomically."""
        text = firewalld_policy.object_xml(content)
        target = os.path.join(self.config_dir, path)
        directory = os.path.dirname(target)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o750)  # as firewalld creates it
        self.commands.append(['write', target])
        handle, temp = tempfile.mkstemp(prefix='.tunnelwall.', dir=directory)
        try:
            with os.fdopen(handle, 'w') as stream:
                stream.write(text)
            os.chmod(temp, 0o644)
            os.rename(temp, target)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise

    def _step_remove_file(self, path):
        # firewalld's backup of a file goes with it: nothing of a deleted object stays in /etc/firewalld.
        for target in (os.path.join(self.config_dir, path), os.path.join(self.config_dir, path) + '.old'):
            if os.path.lexists(target):
                self.commands.append(['remove', target])
                os.unlink(target)

    def runtime_only_rules(self, own_policy):
        """[(option, rich rules)] other tools hold in the runtime only (zones, and policies but ``own_policy``), read
        over D-Bus: one call per zone and policy, the permanent side only where the runtime has rich rules."""
        kept = []
        kinds = ((BUS + '.zone.getZones', BUS + '.zone.getZoneSettings2', 'Zone', 'rules_str', '--zone='),
                 (BUS + '.policy.getPolicies', BUS + '.policy.getPolicySettings', 'Policy', 'rich_rules', '--policy='))
        for names, settings, kind, key, option in kinds:
            for obj in self.dbus(PATH, names) or []:
                if kind == 'Policy' and obj == own_policy:
                    continue
                runtime = (self.dbus(PATH, settings, 'string:' + obj) or {}).get(key) or []
                if not runtime:
                    continue
                permanent = (self.dbus(self._config_path(kind, obj), '%s.config.%s.getSettings%s' % (
                    BUS, kind.lower(), '2' if kind == 'Zone' else '')) or {}).get(key) or []
                extra = [r for r in runtime if r not in permanent]
                if extra:
                    kept.append((option + obj, extra))
        return kept

    def reload(self, name):
        """Reload firewalld, keeping the rich rules other tools hold in the runtime only (a reload drops them)."""
        own = firewalld_policy.policy_name(name) if name else None
        try:
            kept = self.runtime_only_rules(own)
        except (EgressError, ValueError, TypeError, AttributeError):
            # What D-Bus gave could not be read: firewall-cmd's listing, as the dead-man revert does it.
            def run(argv):
                """``self.run(argv)`` as egress_revert's (rc, output): what it printed, or why it failed."""
                rc, out, err = self.run(argv)
                return rc, ((out or '') if rc == 0 else (err or out or ''))
            self.commands.append(['firewall-cmd', '--reload'])
            rc, output = egress_revert.firewalld_reload(run, own)
            if rc != 0:
                raise EgressError('firewall-cmd --reload failed (rc=%s): %s' % (rc, output.strip()))
            return
        self.commands.append(['dbus-send', PATH, BUS + '.reload'])
        self.dbus(PATH, BUS + '.reload')
        for option, rules in kept:
            self.firewall_cmd([option] + ['--add-rich-rule=' + rule for rule in rules])

    def _step_reload(self):
        self.reload(self._name)

    def _step_set_entries(self, layer, ipset, entries):
        value = 'array:string:' + ','.join(entries)
        if len(value.encode('utf-8')) > self.max_argument:
            self._set_entries_from_files(layer, ipset, entries)
        elif layer == 'runtime':
            # setEntries replaces the whole set in one transaction: no moment with a half-updated set.
            self.changing_dbus(PATH, BUS + '.ipset.setEntries', 'string:' + ipset, value)
        else:
            self.changing_dbus(self._config_path('IPSet', ipset), BUS + '.config.ipset.setEntries', value)

    def entries(self, layer, ipset):
        """The entries of ``ipset`` in ``layer`` (runtime or permanent), [] for an empty set."""
        if layer == 'runtime':
            return self.dbus(PATH, BUS + '.ipset.getEntries', 'string:' + ipset) or []
        return self.dbus(self._config_path('IPSet', ipset), BUS + '.config.ipset.getEntries') or []

    def _set_entries_from_files(self, layer, ipset, entries):
        """A set too large for one dbus-send argument: what is missing, then what is stale, each from a file.

        firewall-cmd reads the file itself and hands firewalld the whole list over D-Bus, where no argument limit
        applies; each call is one setEntries. Adding first means the set only ever holds more than the old or the
        new one - never less - while the two calls run.
        """
        have = firewalld_policy.normalize_entries(self.entries(layer, ipset))
        present = set(have)
        wanted = set(entries)
        add = [e for e in entries if e not in present]
        stale = [e for e in have if e not in wanted]
        for option, items in (('--add-entries-from-file=', add), ('--remove-entries-from-file=', stale)):
            if not items:
                continue
            handle, path = tempfile.mkstemp(prefix='tunnelwall-%s-' % ipset, suffix='.txt')  # 0600, only ours
            try:
                with os.fdopen(handle, 'w') as stream:
                    stream.write('\n'.join(items) + '\n')
                self.firewall_cmd((['--permanent'] if layer == 'permanent' else []) + ['--ipset=' + ipset, option + path])
            finally:
                os.unlink(path)

    def _step_add_rules(self, layer, policy, rules):
        self._rules(layer, policy, '--add-rich-rule=', rules)

    def _step_remove_rules(self, layer, policy, rules):
        self._rules(layer, policy, '--remove-rich-rule=', rules)

    def _rules(self, layer, policy, option, rules):
        args = (['--permanent'] if layer == 'permanent' else []) + ['--policy=' + policy] + [option + r for r in rules]
        self.firewall_cmd(args)

    # ------------------------------------------------------------------------------------------------------------
    # transaction
    # ------------------------------------------------------------------------------------------------------------
    def snapshot(self, name):
        """The owned files' bytes, to put back on failure."""
        saved = {}
        for path in self.owned_files(name):
            with open(os.path.join(self.config_dir, path), 'rb') as stream:
                saved[path] = stream.read()
        return saved

    def restore(self, name, saved):
        """Owned files exactly as in ``saved``, then a reload: permanent and runtime are as before the run."""
        for path in self.owned_files(name):
            if path not in saved:
                os.unlink(os.path.join(self.config_dir, path))
        for path, data in saved.items():
            target = os.path.join(self.config_dir, path)
            if os.path.exists(target):
                with open(target, 'rb') as stream:
                    if stream.read() == data:
                        continue
            with open(target, 'wb') as stream:
                stream.write(data)
        self.reload(name)

    def transaction(self, name, steps):
        """Apply ``steps``; on any failure restore the owned files and reload, then raise with both stories."""
        saved = self.snapshot(name)
        try:
            self.apply(steps, name)
        except (EgressError, OSError) as error:
            try:
                self.restore(name, saved)
            except (EgressError, OSError) as second:
                raise EgressError('%s; rolling back failed too: %s (check firewall-cmd --list-all-policies)' % (error, second))
            raise EgressError('%s; rolled back: the owned files were restored and firewalld reloaded, so the '
                              'runtime and permanent configuration are as before this run' % error, rolled_back=True)
