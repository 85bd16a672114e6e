# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every Linux firewall module does before its backend runs: one order of checks, one wording of errors."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import pwd

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import dns_client, egress_request, origins

C_ENV = {'LANG': 'C', 'LC_ALL': 'C'}
COLLECTION = 'tunnelwall.cloudflared'
NEEDS_ROOT = 'this module changes the firewall and must run as root (become: true)'


def fqcn(name):
    """The module's fully qualified collection name (``ufw_egress`` -> ``tunnelwall.cloudflared.ufw_egress``)."""
    return '%s.%s' % (COLLECTION, name)


def fail(module, name, msg, **details):
    """End the module ``name`` with a failure it reports itself: ``msg``, the details and ``module`` (its FQCN).

    The message does not repeat the module's name - Ansible shows the task. ``module`` is how a caller (the role's
    failed.yml) tells a failure the module's own code reported from one it never got to report: a traceback, a killed
    module, a lost connection or AnsibleModule's own argument checks carry no ``module``.
    """
    module.fail_json(msg=msg, module=fqcn(name), **details)


def succeed(module, name, **result):
    """End the module ``name`` with its result and ``module`` (its FQCN), like every failure it reports (fail)."""
    module.exit_json(module=fqcn(name), **result)


def prepare(module, backend, name, render_problem=None):
    """(request, verify or None, nameservers) from the module's options, or fail_json naming option and value.

    The order is the same for every module: the request (egress_request), the probe's options (``verify``), what only
    this backend cannot render (``render_problem(request)`` -> message or None), and only then the host - its
    resolvers. So bad input is reported as such on any host, whatever state its firewall is in. ``name`` is the
    module's short name (``ufw_egress``): its failures carry it as ``module`` (fail).
    """
    try:
        request = egress_request.build(module.params, backend)
    except egress_request.RequestError as error:
        fail(module, name, str(error))
    verify = None
    verify_origins = []
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
            fail(module, name, 'verify: %s' % '; '.join(messages))
        verify_origins = checked.validated_parameters.get('origins') or []
        params, verify = probe_run.verifier(checked.validated_parameters, request.resolv_conf)
        problem = probe_run.check(params)
        if problem:
            fail(module, name, 'verify.%s' % problem)
    try:
        request, verify = with_origins(request, verify, verify_origins=verify_origins)
    except origins.OriginError as error:
        fail(module, name, str(error), origins=None)
    for warning in (request.origin_report or {}).get('warnings', []):
        module.warn(warning)
    problem = render_problem(request) if render_problem else None
    if problem:
        fail(module, name, problem)
    try:
        nameservers = egress_request.nameservers(request, dns_client.read_resolv_conf(request.resolv_conf),
                                                 dns_client.read_resolv_conf(dns_client.SYSTEMD_RESOLV_CONF))
    except egress_request.RequestError as error:
        fail(module, name, str(error))
    return request, verify, list(nameservers)


def read_text(path):
    """A file's text, or None when it cannot be read."""
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def home_of(user):
    """A user's home directory, or None."""
    try:
        return pwd.getpwnam(user).pw_dir
    except (KeyError, TypeError):
        return None


def with_origins(request, verify, read_text=read_text, exists=os.path.exists, home_of=home_of, getaddrinfo=None,
                 verify_origins=()):
    """(request with its origin rules and ``origin_report``, verify with the origin check) - under a default deny.

    Reads cloudflared's config as ``cloudflared_config`` says and resolves every origin with this host's resolver
    (origins.py); OriginError, before anything changed, for a config or a name that cannot be used. Without a default
    deny nothing is read: every destination is reachable anyway. ``verify_origins`` (verify.origins) are checked the
    same way after the change but not allowed: destinations that must stay reachable by other means.
    """
    resolver = {'getaddrinfo': getaddrinfo} if getaddrinfo else {}
    extra = origins.check_origins([dict(o, protocol='tcp') for o in verify_origins or []], 'verify.origins')
    dummy, must_stay = origins.collect(extra, **resolver)
    if not request.default_deny:
        report = {'allowed': [], 'config': None, 'notes': [], 'warnings': [], 'checked': bool(must_stay)}
        return request._replace(origin_report=report), (origins.OriginCheck(must_stay, verify, report=report)
                                                        if must_stay else verify)
    config, from_config, notes = origins.read_config(request.cloudflared_config, read_text, exists, home_of)
    wanted = list(request.origins) + list(request.private_networks) + from_config
    rules, allowed = origins.collect(wanted, **resolver)
    warnings = []
    if config.get('warp_routing') and not request.private_networks:
        warnings.append('%s enables warp-routing but private_networks is empty: private-network traffic through the '
                        'tunnel will be blocked by the default deny' % config['path'])
    if config.get('token') and not request.origins:
        warnings.append('cloudflared runs with a token (remotely-managed tunnel, ingress in the dashboard) and origins '
                        'is empty: its origins will be blocked by the default deny unless listed in origins')
    report = {'allowed': allowed, 'config': config, 'notes': notes, 'warnings': warnings,
              'checked': bool(origins.targets(allowed + must_stay))}
    request = egress_request.with_origin_rules(request, rules, report)
    if allowed or must_stay:
        verify = origins.OriginCheck(allowed + must_stay, verify, report=report)
    return request, verify


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
        """Run ``argv`` (``data`` on stdin) in the C locale: (rc, out, err); a command that cannot start gives rc 127 or 126."""
        try:
            return module.run_command(argv, data=data, binary_data=binary_data, environ_update=C_ENV,
                                      handle_exceptions=False)
        except OSError as error:
            rc = CANNOT_START if error.errno == errno.ENOENT else CANNOT_EXECUTE
            return rc, '', 'cannot run %s: %s' % (argv[0] if argv else '(nothing)', error.strerror or error)
    return run
