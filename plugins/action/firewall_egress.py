# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""firewall_egress: one task for every firewall - the backend's module chosen by name, like ansible.builtin.package.

The checks and the arguments are plugins/plugin_utils/backend_modules.py's; this runs the chosen module (Linux) or
the chosen action (Windows: win_firewall_egress is an action plugin itself) and returns its result as it is.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import backend_modules

MODULE = 'tunnelwall.cloudflared.firewall_egress'
ARGUMENT_SPEC = dict(
    backend=dict(type='str', default=''),
    found=dict(type='dict'),
    plan=dict(type='dict'),
    purposes=dict(type='list', elements='str', default=[]),
    verify=dict(type='dict'),
    options=dict(type='dict', required=True),
)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        """Refuse a change the found backend or the plan cannot make safely, else run the backend's module (or the
        Windows action plugin) with the arguments the options and the plan give."""
        result = super().run(tmp, task_vars)
        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, module=MODULE, msg='; '.join(validation.error_messages))
        params = validation.validated_parameters
        backend, plan = params['backend'], params['plan'] or {}
        if backend and backend not in backend_modules.BACKEND_MODULES:
            return dict(result, failed=True, module=MODULE, msg='backend=%r: choose from %s' % (
                backend, ', '.join(sorted(backend_modules.BACKEND_MODULES))))
        problem = backend_modules.refusal((task_vars or {}).get('inventory_hostname'), backend, params['found'],
                                          params['options'], plan, params['purposes'])
        if problem:
            return dict(result, failed=True, refused=True, module=MODULE, msg='%s Nothing was changed.' % problem)
        module = backend_modules.BACKEND_MODULES[backend]
        args = backend_modules.module_args(backend, params['options'], plan, params['purposes'], params['verify'])
        if backend == 'windows':
            task = self._task.copy()
            task.args = args
            action = self._shared_loader_obj.action_loader.get(
                module, task=task, connection=self._connection, play_context=self._play_context, loader=self._loader,
                templar=self._templar, shared_loader_obj=self._shared_loader_obj)
            return dict(result, **action.run(task_vars=task_vars))
        return dict(result, **self._execute_module(module_name=module, module_args=args, task_vars=task_vars))
