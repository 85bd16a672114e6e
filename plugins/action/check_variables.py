# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""check_variables: refuse egress_firewall_* and tunnelwall_* variables nobody reads, on the controller.

Runs per host (host_vars differ) without connecting to it. The names it knows
come from plugins/plugin_utils/known_variables.py: the role's argument specs,
the lookup's documented variables and the playbooks' own.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.tunnelwall.cloudflared.plugins.lookup import edge_endpoints
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import egress_contract
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import known_variables

ARGUMENT_SPEC = dict(
    lookup_options=dict(type='raw'),
    known=dict(type='list', elements='str', default=[]),
    targets_warning=dict(type='bool', default=False),
    purposes=dict(type='raw'),
    require=dict(type='raw'),
)
# The role's list variables whose items have fixed choices, checked here (before anything connects) and returned clean.
CHOICE_LISTS = (('purposes', 'egress_firewall_purposes', egress_contract.PURPOSES),
                ('require', 'egress_firewall_require', egress_contract.VERIFY_REQUIREMENTS))
TARGETS_WARNING = ('tunnelwall_targets is not set: this playbook runs on every host of the inventory (all). Set it to '
                   'the group of cloudflared hosts (-e tunnelwall_targets=tunnel_hosts); for a canary run add --limit HOST')
HINT = ('ansible-doc -t role tunnelwall.cloudflared.egress_firewall lists the role\'s variables, '
        'ansible-doc -t lookup tunnelwall.cloudflared.edge_endpoints the tunnelwall_edge_* ones, '
        'the README the playbooks\' tunnelwall_* ones')


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        """Validate the role's variables on the controller: unknown names (typos), choice lists and the lookup's
        options; fails, changing nothing, on the first problem."""
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, msg='check_variables: %s' % '; '.join(validation.error_messages))
        params = validation.validated_parameters

        variables = known_variables.lookup_variables(edge_endpoints.DOCUMENTATION)
        known = known_variables.role_variables() | set(variables) | set(known_variables.PLAYBOOK_VARIABLES)
        accepted = self._templar.template(task_vars.get('tunnelwall_known_variables') or [])
        if isinstance(accepted, str):
            accepted = [item.strip() for item in accepted.split(',')]
        if not isinstance(accepted, list) or not all(isinstance(item, str) for item in accepted):
            return dict(result, failed=True, msg='tunnelwall_known_variables=%r: expected a list of variable names '
                                                 '(a trailing * for a prefix). Nothing was changed.' % (accepted,))
        typos = known_variables.unknown(task_vars, known, accepted=list(params['known']) + accepted)
        result.update(changed=False, unknown=[name for name, guess in typos], lookup_options=None, lookup_key=None,
                      windows=known_variables.windows_host(self._templar, task_vars))
        if params['targets_warning'] and 'tunnelwall_targets' not in task_vars:
            result['warnings'] = [TARGETS_WARNING]
        if typos:
            return dict(result, failed=True, msg='%s. Nothing was changed (%s).' % (
                known_variables.describe(typos).capitalize(), HINT))
        for option, variable, choices in CHOICE_LISTS:
            if params[option] is not None:
                result[option], problem = known_variables.choice_list(variable, params[option], choices)
                if problem:
                    return dict(result, failed=True, msg='%s Nothing was changed.' % problem)

        given = params['lookup_options']
        if given is None:
            return result
        if not isinstance(given, Mapping):
            return dict(result, failed=True, msg='egress_firewall_lookup_options=%r: expected a dict of the '
                                                 'edge_endpoints lookup\'s options. Nothing was changed.' % (given,))
        documented = known_variables.lookup_options(edge_endpoints.DOCUMENTATION)
        typos = known_variables.unknown(given, documented, prefixes=('',))
        if typos:
            return dict(result, failed=True, msg='egress_firewall_lookup_options: %s. Nothing was changed.'
                        % known_variables.describe(typos, what='option of the edge_endpoints lookup'))
        # Every option a tunnelwall_edge_* variable can set, from this host's variables or the lookup's default, then
        # the role's options: resolved for this host with these as the lookup's own options, so that the variables
        # of the host the plan happens to be resolved on (run_once) cannot leak into another host's plan.
        options = known_variables.lookup_defaults(edge_endpoints.DOCUMENTATION)
        for variable, option in variables.items():
            if variable in task_vars:
                options[option] = self._templar.template(task_vars[variable])
        options.update(given)
        return dict(result, lookup_options=options, lookup_key=known_variables.options_key(options))
