# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which egress_firewall_* and tunnelwall_* variables exist, and what a typo was meant to be.

A variable nobody reads is a setting the user believes in and the run ignores
(``egress_firewall_default_denny=true`` runs without a default deny). The known
names come from the role's meta/argument_specs.yml (its single source of
truth), the lookup's documented ``tunnelwall_edge_*`` variables and the
playbooks' own variables listed in PLAYBOOK_VARIABLES below. Pure functions
apart from reading those two files.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os

import yaml

PREFIXES = ('egress_firewall_', 'tunnelwall_')
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGUMENT_SPECS = os.path.join(COLLECTION_ROOT, 'roles', 'egress_firewall', 'meta', 'argument_specs.yml')

# The variables the playbooks (site, check, plan, remove) read or set besides the role's and the lookup's, with what
# they are for; README's "Playbook variables" table says the same. Outputs count too: a user reads them.
PLAYBOOK_VARIABLES = {
    'tunnelwall_known_variables': 'names (or prefixes ending in *) of your own variables with these prefixes',
    'tunnelwall_targets': 'host pattern the playbooks run on (default all, with a warning)',
    'tunnelwall_report_dir': 'directory of the fleet report (default ./tunnelwall-report)',
    'tunnelwall_plan_file': 'plan playbook: write the plan (JSON) to this file on the controller',
    'tunnelwall_probe_first': 'site playbook: probe before the change too (set by site itself)',
    'tunnelwall_egress_plan': 'output: the plan of each host',
    'tunnelwall_probe': 'output: what each host reached, for the report',
    'tunnelwall_applied': 'output (check): what each host\'s firewall allows now (egress_firewall_info), for drift',
    'tunnelwall_fleet_report': 'output: the fleet_report result',
    'tunnelwall_fleet': 'output: the set_stats artifact',
    'tunnelwall_apply_error': 'output (site): why the change failed on the host, or null',
}
# The role's output (registered by its tasks).
ROLE_OUTPUTS = ('egress_firewall_result',)
# libyaml's loader where PyYAML has it: every host's first task parses these files (a third of the time).
LOADER = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)


@functools.lru_cache(maxsize=8)
def _parsed(text):
    return yaml.load(text, Loader=LOADER)  # nosec B506 - a safe loader  # noqa: S506


def _options(documentation):
    return _parsed(documentation).get('options') or {}


def role_variables(path=ARGUMENT_SPECS):
    """The names of the role's variables, from meta/argument_specs.yml (every entry point)."""
    with open(path, encoding='utf-8') as handle:
        specs = _parsed(handle.read())['argument_specs']
    names = set(ROLE_OUTPUTS)
    for entry in specs.values():
        names.update((entry.get('options') or {}).keys())
    return names


def lookup_variables(documentation):
    """``{variable: option}`` for every ``vars:`` entry of a plugin's DOCUMENTATION (YAML text)."""
    options = _options(documentation)
    found = {}
    for option, spec in options.items():
        for entry in spec.get('vars') or []:
            found[entry['name']] = option
    return found


def lookup_defaults(documentation):
    """``{option: default}`` of a plugin's DOCUMENTATION, for the options that have a ``vars:`` entry."""
    options = _options(documentation)
    return dict((option, copy.deepcopy(spec.get('default'))) for option, spec in options.items() if spec.get('vars'))


def closest(name, known):
    """The known name ``name`` most likely meant, or None (difflib's ratio, cutoff 0.6)."""
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown(names, known, prefixes=PREFIXES, accepted=()):
    """``[(name, closest known name or None)]`` for each name with one of ``prefixes`` that is not known, sorted.

    ``accepted`` are more names to let through, a trailing ``*`` making one a prefix (``tunnelwall_lab_*``).
    """
    exact = set(known) | {name for name in accepted if not name.endswith('*')}
    starts = tuple(name[:-1] for name in accepted if name.endswith('*'))
    return [(name, closest(name, known)) for name in sorted(set(names))
            if name.startswith(prefixes) and name not in exact and not (starts and name.startswith(starts))]


def describe(found, what='variable'):
    """``unknown variable egress_firewall_default_denny (did you mean egress_firewall_default_deny?)``, joined by '; '."""
    return '; '.join('unknown %s %s%s' % (what, name, ' (did you mean %s?)' % guess if guess else '')
                     for name, guess in found)


def options_key(options):
    """One string per distinct set of lookup options: the same options give the same key, whatever their order."""
    return json.dumps(options, sort_keys=True, separators=(',', ':'), default=str)


def lookup_options(documentation):
    """The option names of a plugin's DOCUMENTATION (YAML text)."""
    return set(_options(documentation))


def choice_list(name, value, choices):
    """``(items, problem)``: a list variable whose items must be among ``choices``, given as a list or as a string.

    A string is split on commas and line ends - ``-e egress_firewall_purposes=tunnel,api``, or how AWX stores a
    multiple-choice survey default (one item per line). ``problem`` names the variable, its value and what is unknown.
    """
    items = value
    if isinstance(value, str):
        items = [item.strip() for item in value.replace('\n', ',').split(',') if item.strip()]
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        return None, '%s=%s: expected a list of names' % (name, json.dumps(value, default=str))
    wrong = [item for item in items if item not in choices]
    if wrong:
        return None, '%s=%s: unknown %s (choose from %s).' % (
            name, json.dumps(value if isinstance(value, str) else str(value)), ', '.join(wrong), ', '.join(choices))
    return items, None


# How the collection tells a Windows host without connecting to it: its connection plugin or shell, or facts already
# gathered. A Python module cannot run there, so this decides which module a task sends.
WINDOWS_CONNECTIONS = ('winrm', 'psrp')
WINDOWS_SHELLS = ('powershell', 'cmd')


def on_windows(host_vars):
    """Whether a host is Windows, from its (templated) variables - windows_host's test."""
    facts = host_vars.get('ansible_facts') or {}
    return (facts.get('os_family') == 'Windows' or host_vars.get('ansible_connection') in WINDOWS_CONNECTIONS
            or host_vars.get('ansible_shell_type') in WINDOWS_SHELLS)


def windows_host(templar, task_vars):
    """Whether the host of an action's ``task_vars`` is Windows (on_windows of its templated variables)."""
    task_vars = task_vars or {}
    names = ('ansible_facts', 'ansible_connection', 'ansible_shell_type')
    return on_windows(templar.template(dict((name, task_vars[name]) for name in names if name in task_vars)))
