# -*- coding: utf-8 -*-
# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # Attributes of a module that only reads; each module adds its platform.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Runs fully in check mode; it never changes anything.
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
"""
