# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""win_firewall_egress: the whole egress transaction in one task - validate here, apply, verify, confirm or restore.

See plugins/plugin_utils/windows_firewall.py for the split and the sequence.
"""

from __future__ import annotations

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import probe_run
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.egress_spec import (
    EXTRA_ALLOW_SPEC, REQUIRED_IF, RULES_SPEC, TRANSACTION_SPEC)
from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_firewall

VERIFY_SPEC = dict(probe_run.VERIFY_SPEC, options=dict(
    probe_run.VERIFY_SPEC['options'],
    # A path on the Windows host: type path would expand ~ and variables on the controller.
    ca_path=dict(type='str'),
))

ARGUMENT_SPEC = dict(
    rules=RULES_SPEC,
    extra_allow=EXTRA_ALLOW_SPEC,
    name=TRANSACTION_SPEC['name'],
    default_deny=TRANSACTION_SPEC['default_deny'],
    allow_dns=TRANSACTION_SPEC['allow_dns'],
    dns_servers=TRANSACTION_SPEC['dns_servers'],
    allow_dhcp=TRANSACTION_SPEC['allow_dhcp'],
    allow_mld=TRANSACTION_SPEC['allow_mld'],
    allow_metadata=TRANSACTION_SPEC['allow_metadata'],
    profiles=dict(type='list', elements='str', default=list(windows_firewall.PROFILES)),
    verify=VERIFY_SPEC,
    confirm_timeout=TRANSACTION_SPEC['confirm_timeout'],
    lock_timeout=TRANSACTION_SPEC['lock_timeout'],
    state=dict(type='str', default='present', choices=['present', 'absent']),
    # Origins: names resolved and cloudflared's config read on the host (windows_firewall.discover_origins).
    origins=TRANSACTION_SPEC['origins'],
    private_networks=TRANSACTION_SPEC['private_networks'],
    cloudflared_config=TRANSACTION_SPEC['cloudflared_config'],
)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        """Validate the options and build the request here, read the origins on the host, then run the Windows firewall
        transaction (apply, verify, confirm or restore)."""
        result = super().run(tmp, task_vars)
        verify = self._task.args.get('verify')
        if verify is not None and not isinstance(verify, (dict, str)):
            # ArgumentSpecValidator raises a TypeError (ansible-core 2.19 to 2.21) for a dict option with sub-options
            # given a number, a boolean or a list of them; a string gets its own error from it.
            return dict(result, failed=True, module=windows_firewall.MODULE,
                        msg='verify=%r: expected a dict with plan and, if needed, require, timeout, origins, ca_path, '
                            'validate_certs' % (verify,))
        validation = ArgumentSpecValidator(ARGUMENT_SPEC, required_if=REQUIRED_IF).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, module=windows_firewall.MODULE, msg='; '.join(validation.error_messages))
        params = validation.validated_parameters

        def execute(module, module_args):
            """Run ``module`` on the host; a lost connection is a result saying so, not an exception, so the transaction
            can still report what the scheduled task will do."""
            try:
                return self._execute_module(module_name=module, module_args=module_args, task_vars=task_vars)
            except AnsibleConnectionFailure as error:
                # Lost between apply and confirmation: the result must still say what the scheduled task will do.
                return {'unreachable': True, 'msg': 'connection lost: %s' % error}

        try:
            request, warning = windows_firewall.build_request(params)
            probe_params = windows_firewall.verify_params(params['verify'])
            # Read-only module calls: the service's config and the origin names, read and resolved on the host.
            request = windows_firewall.discover_origins(request, execute)
            # After the change the host connects to every TCP origin (and verify.origins); the controller judges.
            origin_check = windows_firewall.origin_check(request, execute, (params['verify'] or {}).get('origins'))
        except windows_firewall.RuleError as error:
            return dict(result, failed=True, module=windows_firewall.MODULE, msg=str(error))
        prepared = windows_firewall.prepare(request, params['profiles'])

        try:
            result.update(windows_firewall.run(request, prepared, probe_params, execute, check_mode=self._task.check_mode,
                                               origin_check=origin_check))
        except windows_firewall.TransactionFailed as error:
            # ``module`` only when the failure was reported, by the module or by windows_firewall.run (see there).
            result.update(error.details, failed=True, msg=str(error))
        result = windows_firewall.with_rule_changes(result, prepared, request.name)
        result['origins'] = request.origin_report
        if warning:
            result['warnings'] = list(result.get('warnings') or []) + [warning]
        return result
