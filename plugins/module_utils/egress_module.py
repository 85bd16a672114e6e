# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every Linux firewall module does before its backend runs: one order of checks, one wording of errors."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import dns_client, egress_request

C_ENV = {'LANG': 'C', 'LC_ALL': 'C'}


def prepare(module, backend, name, render_problem=None):
    """(request, verify or None, nameservers) from the module's options, or fail_json naming option and value.

    The order is the same for every module: the request (egress_request), the probe's options (``verify``), what only
    this backend cannot render (``render_problem(request)`` -> message or None), and only then the host - its
    resolvers. So bad input is reported as such on any host, whatever state its firewall is in.
    """
    try:
        request = egress_request.build(module.params, backend)
    except egress_request.RequestError as error:
        module.fail_json(msg='%s: %s' % (name, error))
    verify = None
    if module.params.get('verify') is not None:  # {} too: it lacks the required plan
        # Imported only when asked for: the probe's code (ssl, QUIC, TLS parsing) is most of a module's start-up
        # time, and a run without verification does not need it. AnsiballZ bundles it all the same.
        from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import probe_run
        options = module.params['verify']
        checked = ArgumentSpecValidator(probe_run.VERIFY_SPEC['options']).validate(options)
        if checked.error_messages:
            # ArgumentSpecValidator words an unknown option as just its name; AnsibleModule would say "Unsupported".
            messages = [('unsupported option %s' % e.error_message) if isinstance(e, UnsupportedError) else e.error_message
                        for e in checked.errors]
            module.fail_json(msg='%s: verify: %s' % (name, '; '.join(messages)))
        params, verify = probe_run.verifier(checked.validated_parameters, request.resolv_conf)
        problem = probe_run.check(params)
        if problem:
            module.fail_json(msg='%s: verify.%s' % (name, problem))
    problem = render_problem(request) if render_problem else None
    if problem:
        module.fail_json(msg='%s: %s' % (name, problem))
    try:
        nameservers = egress_request.nameservers(request, dns_client.read_resolv_conf(request.resolv_conf),
                                                 dns_client.read_resolv_conf(dns_client.SYSTEMD_RESOLV_CONF))
    except egress_request.RequestError as error:
        module.fail_json(msg='%s: %s' % (name, error))
    return request, verify, list(nameservers)


# A command that cannot start gets a shell's exit status: 127 when it is not there, 126 when it cannot be executed.
CANNOT_START = 127
CANNOT_EXECUTE = 126


def command_runner(module, binary_data=False):
    """``run(argv, data=None)`` -> (rc, out, err) in the C locale, for egress_transaction and the backends.

    Never fails the module itself: with the default ``handle_exceptions=True``, run_command calls fail_json when a
    command cannot start (OSError), which ends the process in the middle of a transaction, before its restore runs.
    Here that is an ordinary failure - rc 127 or 126 and the reason in ``err`` - which the caller handles like any
    other (restore, then report).
    """
    def run(argv, data=None):
        try:
            return module.run_command(argv, data=data, binary_data=binary_data, environ_update=C_ENV,
                                      handle_exceptions=False)
        except OSError as error:
            rc = CANNOT_START if error.errno == errno.ENOENT else CANNOT_EXECUTE
            return rc, '', 'cannot run %s: %s' % (argv[0] if argv else '(nothing)', error.strerror or error)
    return run
