# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""egress_firewall_info: the module on POSIX hosts; on Windows hosts the same answer from the Windows firewall.

On a host reached with PowerShell the action reads the rule group of win_firewall_egress (its read-only ``read``
step), cloudflared's origins the Windows way (its read-only ``origins`` step, parsed here: windows_firewall.discover)
and compares both with the plan (egress_applied.plan_drift) - the result has the module's keys, backend ``windows``.
Everywhere else it runs the module unchanged.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_applied, origins
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import known_variables, windows_firewall

WINDOWS_SPEC = {
    'name': {'type': 'str', 'default': 'tunnelwall'},
    'backend': {'type': 'str', 'default': 'auto', 'choices': ['auto', 'windows']},
    'plan': {'type': 'dict'},
    'origins': {'type': 'list', 'elements': 'dict'},
    'private_networks': {'type': 'list', 'elements': 'dict'},
    'cloudflared_config': {'type': 'str', 'default': 'none'},
}


def windows_info(params, execute):
    """The module's result for a Windows host, from ``execute(module, args)`` (the Windows module's read-only steps)."""
    name = params['name']
    read = execute(windows_firewall.MODULE, {'prepared': windows_firewall.read_args(name)})
    applied, applied_error = None, None
    if read.get('failed') or read.get('unreachable'):
        applied_error = read.get('msg') or 'cannot read the rule group %r' % windows_firewall.group_name(name)
    else:
        applied = windows_firewall.applied_from_rules(read.get('rules'), name)
    fresh = None
    if params['origins'] is not None or params['private_networks'] is not None or params['cloudflared_config'] != 'none':
        try:
            setting = origins.check_config_setting(params['cloudflared_config'], windows=True)
            rules, report = windows_firewall.discover(origins.check_origins(params['origins']),
                                                      origins.check_private_networks(params['private_networks']),
                                                      setting, execute)
            fresh = dict(report, rules=rules, error=None)
        except (origins.OriginError, windows_firewall.RuleError) as error:
            fresh = {'rules': None, 'allowed': None, 'config': None, 'notes': [], 'error': str(error)}
    drift = egress_applied.plan_drift(applied, params['plan'], fresh and fresh['rules']) if params['plan'] else None
    return {'changed': False, 'backend': 'windows',
            'description': 'Windows Firewall, rule group %r' % windows_firewall.group_name(name),
            'applied': applied, 'applied_error': applied_error, 'drift': drift, 'origins': fresh,
            'firewalld': None, 'ufw': None, 'nftables': None}


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        """The module on a Linux host; on Windows the same report built here from read-only Windows module calls."""
        result = super().run(tmp, task_vars)
        if not known_variables.windows_host(self._templar, task_vars):
            result.update(self._execute_module(task_vars=task_vars, wrap_async=self._task.async_val))
            return result
        validation = ArgumentSpecValidator(WINDOWS_SPEC).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, msg='egress_firewall_info: %s' % '; '.join(validation.error_messages))

        def execute(module, module_args):
            """Run the Windows module ``module`` with ``module_args`` on the host; its result."""
            return self._execute_module(module_name=module, module_args=module_args, task_vars=task_vars)
        result.update(windows_info(validation.validated_parameters, execute))
        return result
