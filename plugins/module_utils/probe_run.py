# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One probe of the tunnel edge from this host, as edge_probe runs it: for edge_probe and for the firewall modules,
which verify their change in the same process (egress_transaction) instead of a second task."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.tunnelwall.cloudflared.plugins.module_utils import dns_client, egress_contract, probe_report, reachability
from ansible_collections.tunnelwall.cloudflared.plugins.module_utils.probe_options import (
    PROBE_ARGUMENT_SPEC, families_for, validate_probe_params)

# The firewall modules' ``verify`` option: the probe options that make sense after a change.
VERIFY_SPEC = dict(type='dict', options=dict(
    plan=dict(type='dict', required=True),
    # 'origins': the firewall modules' own check of cloudflared's origins (origins.OriginCheck), not the probe's.
    require=dict(PROBE_ARGUMENT_SPEC['require'], choices=list(egress_contract.VERIFY_REQUIREMENTS)),
    # The probe's own default (edge_probe, the role's egress_firewall_probe_timeout): one wait for every probe.
    timeout=PROBE_ARGUMENT_SPEC['timeout'],
    # Destinations that must stay reachable, checked like the allowed origins (origins.OriginCheck) but not allowed.
    origins=dict(type='list', elements='dict', options=dict(host=dict(type='str', required=True),
                                                            port=dict(type='int', required=True))),
    ca_path=dict(type='path'),
    validate_certs=dict(type='bool', default=True),
))


def probe_params(options):
    """Every probe option, the spec's defaults filled in for those ``options`` leave out."""
    params = dict((key, spec.get('default')) for key, spec in PROBE_ARGUMENT_SPEC.items())
    params.update((key, value) for key, value in options.items() if value is not None)
    return params


def check(params):
    """The first problem with the probe's options (a message naming the option), before anything is contacted."""
    problem = validate_probe_params(params)
    if not problem and params.get('ca_path') and not os.path.isfile(params['ca_path']):
        problem = 'ca_path=%s: no such file' % params['ca_path']
    return problem


def probe(params, resolv_conf='/etc/resolv.conf'):
    """Probe as ``params`` (already checked) say; edge_probe's return value without ``changed``."""
    plan = params['plan']
    families = families_for(params, reachability.routable_families)
    targets, questions = probe_report.probe_work(params, families)
    nameservers = dns_client.read_resolv_conf(resolv_conf)

    def ask_dns():
        """Ask the host's nameservers the probe's DNS questions."""
        return probe_report.resolve_all(questions, nameservers, params['timeout'])

    context = reachability.tls_context(params['validate_certs'], params['ca_path'])
    started = time.time()
    results, answers = reachability.run_probes(targets, params['timeout'], params['concurrency'], context,
                                               ask_dns if questions else None)
    output = probe_report.report(params['require'], plan, families, results, nameservers, answers or [], bool(questions))
    output['elapsed_ms'] = int((time.time() - started) * 1000)
    return output


def verifier(options, resolv_conf):
    """A ``verify()`` for egress_transaction.run: (ok, the probe's output, the unmet requirements as one line)."""
    params = probe_params(dict((k, v) for k, v in options.items() if k != 'origins'))
    params['require'] = [r for r in params['require'] if r != 'origins']

    def verify():
        """Probe now: (ok, the probe's output, the unmet requirements joined with ' | ')."""
        output = probe(params, resolv_conf)
        unmet = output['unmet_requirements']
        return not unmet, output, ' | '.join(unmet)
    return params, verify
