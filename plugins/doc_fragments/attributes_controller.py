# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # Attributes of an action that runs on the controller only (no module on the host), next to
    # ansible.builtin.action_common_attributes and its .flow part; each plugin adds its platform and host loop.
    DOCUMENTATION = r"""
attributes:
  action:
    description: Everything is done by the action plugin on the controller.
    support: full
  async:
    support: none
"""
