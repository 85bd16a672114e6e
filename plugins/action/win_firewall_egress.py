# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""win_firewall_egress: validate and compute the wanted rules here, reconcile them on Windows.

See plugins/plugin_utils/windows_firewall.py for the split.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_spec import EXTRA_ALLOW_SPEC, REQUIRED_IF, RULES_SPEC
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_firewall

MODULE = 'tunnelwall.cloudflared.win_firewall_egress'

ARGUMENT_SPEC = dict(
    rules=RULES_SPEC,
    name=dict(type='str', default='tunnelwall cloudflared'),
    default_deny=dict(type='bool', default=False),
    profiles=dict(type='list', elements='str', default=list(windows_firewall.PROFILES)),
    allow_dns=dict(type='bool', default=True),
    dns_servers=dict(type='list', elements='str', default=[]),
    extra_allow=EXTRA_ALLOW_SPEC,
    state=dict(type='str', default='present', choices=['present', 'absent']),
)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        validation = ArgumentSpecValidator(ARGUMENT_SPEC, required_if=REQUIRED_IF).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, msg='win_firewall_egress: %s' % '; '.join(validation.error_messages))
        try:
            prepared = windows_firewall.prepare(validation.validated_parameters)
        except windows_firewall.RuleError as error:
            return dict(result, failed=True, msg='win_firewall_egress: %s' % error)
        result.update(self._execute_module(module_name=MODULE, module_args={'prepared': prepared}, task_vars=task_vars))
        return result
