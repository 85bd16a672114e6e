# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""win_edge_probe: build the QUIC datagrams here, let Windows send them, read the answers here.

See plugins/plugin_utils/windows_probe.py for why the work is split.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_probe

MODULE = 'tunnelwall.cloudflared.win_edge_probe'


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        """Prepare the probes here, let the Windows module send them, judge the answers here; fails on unmet requirements."""
        result = super().run(tmp, task_vars)
        params, problem = windows_probe.validate(self._task.args)
        if problem:
            return dict(result, failed=True, msg='win_edge_probe: %s' % problem)

        prepared = windows_probe.prepare(params)
        module_result = self._execute_module(module_name=MODULE, module_args={'prepared': prepared},
                                             task_vars=task_vars)
        if module_result.get('failed'):
            return dict(result, **module_result)
        output = windows_probe.report(params, prepared, module_result)
        result.update(output, changed=False)
        if output['unmet_requirements']:
            result.update(failed=True, msg='win_edge_probe: not met: %s' % ' | '.join(output['unmet_requirements']))
        return result
