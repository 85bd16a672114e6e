# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every Linux firewall module does before its backend runs: one order of checks, one wording of errors."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import dns_client, egress_request, probe_run

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
    if module.params.get('verify'):
        params, verify = probe_run.verifier(module.params['verify'], request.resolv_conf)
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


def command_runner(module):
    """``run(argv)`` -> (rc, out, err) in the C locale, for egress_transaction and the backends."""
    def run(argv):
        return module.run_command(argv, environ_update=C_ENV)
    return run
