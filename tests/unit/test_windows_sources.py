# -*- coding: utf-8 -*-
"""The Windows modules cannot run here: every PowerShell and C# source must at least parse."""

from __future__ import annotations

import pathlib

import pytest
import tree_sitter
import tree_sitter_c_sharp
import tree_sitter_powershell

REPO = pathlib.Path(__file__).resolve().parents[2]
POWERSHELL = sorted((REPO / 'plugins').rglob('*.ps1')) + sorted((REPO / 'plugins').rglob('*.psm1'))
CSHARP = sorted((REPO / 'plugins').rglob('*.cs'))


def errors(language, source):
    tree = tree_sitter.Parser(tree_sitter.Language(language)).parse(source)
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == 'ERROR' or node.is_missing:
            found.append('line %d: %s' % (node.start_point[0] + 1, source[node.start_byte:node.end_byte][:60]))
        stack.extend(node.children)
    return found


def test_there_are_windows_sources_to_check():
    assert any(p.name == 'win_edge_probe.ps1' for p in POWERSHELL)
    assert any(p.name == 'EdgeProbe.cs' for p in CSHARP)


@pytest.mark.parametrize('path', POWERSHELL, ids=lambda p: p.name)
def test_powershell_parses(path):
    assert errors(tree_sitter_powershell.language(), path.read_bytes()) == []


@pytest.mark.parametrize('path', CSHARP, ids=lambda p: p.name)
def test_csharp_parses(path):
    assert errors(tree_sitter_c_sharp.language(), path.read_bytes()) == []


def test_a_syntax_error_is_caught():
    assert errors(tree_sitter_powershell.language(), b'if ($a { Write-Output 1 }')
    assert errors(tree_sitter_c_sharp.language(), b'class A { void F( { } }')


@pytest.mark.parametrize('path', POWERSHELL, ids=lambda p: p.name)
def test_powershell_modules_use_the_collection_csharp_util_that_exists(path):
    text = path.read_text()
    for line in text.splitlines():
        if line.startswith('#AnsibleRequires -CSharpUtil ansible_collections.tunnelwall.cloudflared.plugins.module_utils.'):
            name = line.rsplit('.', 1)[1]
            assert (REPO / 'plugins' / 'module_utils' / (name + '.cs')).exists(), line


def test_csharp_stays_within_csharp_5():
    # Windows PowerShell 5.1 compiles module utils with the .NET Framework compiler (C# 5).
    source = (REPO / 'plugins' / 'module_utils' / 'EdgeProbe.cs').read_text()
    for construct in ('$"', '?.', 'nameof(', ' => ', 'out var '):
        assert construct not in source, construct
