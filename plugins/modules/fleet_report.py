#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This file holds only the documentation: fleet_report is an action plugin that runs on the
# controller (plugins/action/fleet_report.py); there is no module to run on a host.

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_report
short_description: Write what every host of a fleet reaches of the Cloudflare Tunnel edge as Markdown, HTML and JSON
version_added: 0.1.0
author: tunnelwall developers (@tunnelwall)
description:
  - Rolls the results of M(tunnelwall.cloudflared.edge_probe) (or M(tunnelwall.cloudflared.win_edge_probe)) of a whole
    fleet up into one report, so that the state of the fleet shows at a glance - one row per host, one column per check
    (DNS; TCP, TLS and QUIC on port 7844; the API and update hosts on port 443; each per address family), the settings
    cloudflared should run with on each host (C(--protocol), C(--edge-ip-version)), and what to open where something
    fails.
  - Writes the report on the controller as Markdown, as a self-contained HTML page (inline CSS, no script, nothing loaded
    from elsewhere, status badges in colour) and as JSON, and returns a compact summary for M(ansible.builtin.set_stats),
    so that AWX and the automation controller keep it as a job artifact.
  - A cell is V(ok) when every address answered, V(partial) when some did, V(failed) when none did, V(skipped) when the
    host did not probe it and V(unreachable) when the host has no probe result at all. A host is V(ok), V(degraded)
    (cloudflared can run - a tunnel protocol works - but a cell failed or is partial, or DNS differs from the plan -
    QUIC blocked with HTTP/2 working, one address family or region blocked, the API unreachable), V(failing) (no tunnel
    protocol works, a requirement of the probe is not met, or the probe failed) or V(unreachable) (no probe result -
    the host could not be reached, or the probe was skipped or failed before it probed). Every host that is not V(ok)
    is listed under "What to fix" with the destinations to open - only the plan's blocks that hold an address that
    failed, in the family that failed. The hosts are listed worst first, each with the reason in one line.
  - Runs once per play whatever the play's hosts, like M(ansible.builtin.add_host). Never fails because of what the
    report says; use the returned RV(stats) or RV(report) to decide that.
options:
  results:
    description:
      - The registered probe result of each host, by inventory host name. A host whose result is missing (V(null)),
        unreachable, skipped or failed without results is reported as unreachable.
      - Mutually exclusive with O(probe_var).
    type: dict
  probe_var:
    description:
      - The name of the variable the probe registered on each host; read from C(hostvars) of every host of O(hosts).
        A host without it is reported as unreachable.
      - Mutually exclusive with O(results).
    type: str
  plan_var:
    description:
      - With O(probe_var), the name of the variable that holds each host's own egress plan (hosts of one fleet may
        have plans of different regions); each row then says where its plan came from (C(plan)), and the report
        counts the hosts per region (C(regions)).
    type: str
  applied_var:
    description:
      - With O(probe_var) and O(plan_var), the name of the variable that holds what each host's firewall allows now -
        the registered result of M(tunnelwall.cloudflared.egress_firewall_info) or its C(applied). Each row then
        compares it with the host's plan (C(drift) - C(new) blocks of the plan the firewall does not allow, C(gone)
        allowed blocks the plan no longer has, for the purposes V(tunnel), V(api) and V(update) the firewall holds),
        and a host that is otherwise ok but drifted is V(drifted).
      - When the registered result carries C(origins) (M(tunnelwall.cloudflared.egress_firewall_info) asked for
        cloudflared's origins), purpose V(origin) is compared too - the origins resolved afresh on the host against
        what the firewall allows for them; origins that could not be resolved make the host V(degraded), naming why.
    type: str
  hosts:
    description:
      - The hosts to report on, in this order, with O(probe_var).
      - Defaults to C(ansible_play_hosts_all), every host the play started with, so that the hosts that became
        unreachable are in the report too.
    type: list
    elements: str
  dest:
    description:
      - The directory on the controller to write the report to; created when missing. A relative path is relative
        to the directory C(ansible-playbook) runs in.
      - Refused when it is writable by group or others (such as C(/tmp)) or owned by another user than the current
        one or root, since another user could swap the report there.
      - Each file is written to a temporary file in the same directory and renamed over the report. A report file
        that is a symbolic link is refused, never followed, neither to read it for the change check and C(--diff)
        nor to write it.
    type: path
    required: true
  formats:
    description: Which files to write.
    type: list
    elements: str
    choices: [markdown, html, json]
    default: [markdown, html, json]
  basename:
    description:
      - The file name of the report without extension; the files are O(basename) with C(.md), C(.html) and C(.json).
      - Letters, digits, V(.), V(_) and V(-), starting with a letter or digit.
    type: str
    default: tunnelwall-fleet-report
  plan:
    description:
      - The egress plan the hosts were probed with (the result of the P(tunnelwall.cloudflared.edge_endpoints#lookup)
        lookup). The report then says where it came from (DNS, or Cloudflare's published list), when it was resolved,
        and for which region and generation of names.
    type: dict
# The collection's fragments first: of two fragments describing one attribute, the first listed wins.
extends_documentation_fragment:
  - tunnelwall.cloudflared.attributes_controller
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  bypass_host_loop:
    support: full
  check_mode:
    description: Writes nothing and says which files it would write.
    support: full
  diff_mode:
    description: Shows the old and the new content of each file that changes.
    support: full
  platform:
    description: Runs on the controller only; the managed hosts are only read from their registered results.
    support: full
    platforms: all
notes:
  - The files are written atomically (a temporary file beside each, then renamed over it); new files get mode C(0644),
    existing files keep theirs.
  - A file is compared with the one on disk with every time stamp in both masked (the time the report was generated,
    the time the plan was resolved). When nothing else differs the file is left alone and the task reports no change,
    so a rerun over an unchanged fleet is idempotent; the file then keeps the times of the run that first wrote that
    content, while the returned RV(report) carries the time of this run.
  - Checks with a purpose of V(extra) (the probe's explicit O(tunnelwall.cloudflared.edge_probe#module:targets)) have
    no column; the labels of the columns name the ports of the egress plan (7844 and 443).
seealso:
  - module: tunnelwall.cloudflared.edge_probe
  - module: tunnelwall.cloudflared.win_edge_probe
  - module: ansible.builtin.set_stats
"""

EXAMPLES = r"""
- name: Prove what each host reaches; a failed probe still has results for the report
  tunnelwall.cloudflared.edge_probe:
    plan: "{{ egress_plan }}"
  register: probe
  ignore_errors: true

- name: Write the fleet report on the controller
  tunnelwall.cloudflared.fleet_report:
    probe_var: probe
    plan: "{{ egress_plan }}"
    dest: "{{ playbook_dir }}/reports"
  register: fleet

- name: Keep the summary as a job artifact (AWX, automation controller)
  ansible.builtin.set_stats:
    data:
      tunnelwall_fleet: "{{ fleet.stats }}"

- name: Fail when a host cannot open a tunnel at all
  ansible.builtin.assert:
    that: fleet.stats.hosts | dict2items | selectattr('value.protocol', 'equalto', 'none') | list | length == 0
    fail_msg: "no tunnel protocol works on some hosts: see {{ fleet.paths.html }}"

- name: Only the HTML page, from results gathered elsewhere
  tunnelwall.cloudflared.fleet_report:
    results:
      web1: "{{ hostvars['web1'].probe }}"
      web2: "{{ hostvars['web2'].probe | default(none) }}"
    formats: [html]
    basename: tunnel-egress
    dest: /var/tmp/reports
"""

RETURN = r"""
report:
  description: The whole report, as written to the JSON file.
  returned: success
  type: dict
  contains:
    version:
      description: The version of this structure.
      type: int
      sample: 1
    generated_at:
      description: When this run generated the report (UTC).
      type: str
      sample: "2026-11-27T10:05:00Z"
    plan:
      description: C(source), C(resolved_at), C(region) and C(generation) of O(plan); V(null) without it.
      type: dict
    columns:
      description: The columns some host probed, each with C(id) (for example V(quic_ipv4)), C(label) and C(family).
      type: list
      elements: dict
      sample: [{id: dns, label: DNS, family: null}, {id: quic_ipv4, label: QUIC 7844, family: ipv4}]
    rows:
      description:
        - One per host, worst first (V(failing), V(unreachable), V(degraded), V(drifted), V(ok); in the order given
          within a state) - C(host), C(state) (V(ok), V(degraded), V(failing), V(unreachable), V(drifted)), C(why)
          (the reason in one line, the table's "Why" column; empty when ok), C(message) (why unreachable), C(protocol)
          and C(reason) (the probe's recommendation), C(settings) (the probe's
          C(recommended_settings)), C(cells) (by column id, each with C(state), C(text) and, when some failed, C(errors)
          counting them by kind), C(failing) (the ids of failed and partial columns), C(problems) (what failed, in
          words), C(plan) (C(source), C(resolved_at), C(region) and C(generation) of the host's plan with O(plan_var),
          else V(null)), C(drift) (with O(applied_var) - C(new), C(gone), C(purposes) and C(text) like V(+2/−1) - else
          V(null)), C(to_open) (the probe's C(to_open) - C(purpose), C(protocol), C(port), C(destinations) - for what
          failed) and C(unmet) (the requirements not met).
      type: list
      elements: dict
    totals:
      description: How many hosts, and how many of them are ok, degraded, failing, unreachable and drifted.
      type: dict
      sample: {hosts: 4, ok: 1, degraded: 1, failing: 1, unreachable: 1, drifted: 0}
    regions:
      description: How many hosts have a plan of each region (with O(plan_var)); empty without.
      type: dict
      sample: {fed: 1, global: 3}
    protocols:
      description: How many hosts each protocol is recommended for.
      type: dict
      sample: {http2: 1, quic: 1}
paths:
  description: The file of each format of O(formats), whether or not it was written this time.
  returned: success
  type: dict
  sample: {markdown: /srv/reports/tunnelwall-fleet-report.md, html: /srv/reports/tunnelwall-fleet-report.html}
updated:
  description: The formats whose file was written (in check mode, would be written).
  returned: success
  type: list
  elements: str
  sample: [markdown, html, json]
stats:
  description:
    - A compact summary for M(ansible.builtin.set_stats) - the totals, and per host its C(state), C(protocol), the
      cloudflared C(settings) to run with (C(protocol), C(edge_ip_version); V(null) when none works), the ids of its
      C(failing) columns, what C(to_open) and, for an unreachable host, the C(message).
  returned: success
  type: dict
  sample:
    generated_at: "2026-11-27T10:05:00Z"
    totals: {hosts: 3, ok: 1, degraded: 1, failing: 0, unreachable: 1, drifted: 0}
    hosts:
      web1: {state: ok, protocol: quic, failing: [], to_open: [], settings: {protocol: quic, edge_ip_version: auto}}
      web2:
        state: degraded
        protocol: http2
        failing: [quic_ipv4]
        settings: {protocol: http2, edge_ip_version: '4'}
        to_open: [{purpose: tunnel, protocol: udp, port: 7844, destinations: [198.41.192.7/32]}]
      db1: {state: unreachable, protocol: null, failing: [], settings: {}, to_open: [],
            message: "unreachable: Failed to connect to the host via ssh"}
"""
