# -*- coding: utf-8 -*-
"""win_firewall_egress.ps1 cannot run here; what can be checked from its syntax tree is checked.

The dead-man scheduled task runs the module's ``$restoreScript`` as an -EncodedCommand in a fresh powershell.exe, so
that script block must use no variable of the module (they do not exist there) and must fit a Windows command line.
"""

from __future__ import annotations

import base64
import pathlib
import re

import tree_sitter
import tree_sitter_powershell

from ansible_collections.tunnelwall.cloudflared.plugins.plugin_utils import windows_firewall as wf

MODULE = pathlib.Path(__file__).resolve().parents[2] / 'plugins' / 'modules' / 'win_firewall_egress.ps1'
AUTOMATIC = {'$_', '$true', '$false', '$null'}
# CreateProcess takes at most 32767 characters of command line; the task's action is one.
COMMAND_LINE_LIMIT = 32767
POWERSHELL = 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe'


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def script_block(source, name):
    """The text and the node of the script block assigned to ``$name``."""
    tree = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language())).parse(source)
    for node in _walk(tree.root_node):
        if node.type == 'assignment_expression' and source[node.start_byte:node.end_byte].startswith(b'$' + name.encode() + b' '):
            block = next(n for n in _walk(node) if n.type == 'script_block')
            return source[block.start_byte:block.end_byte].decode(), block
    raise AssertionError('no $%s = { ... } in the source' % name)


def foreign_variables(source, block):
    """Variables the block reads but neither declares (param, assignment, foreach) nor gets from PowerShell."""
    def text(node):
        return source[node.start_byte:node.end_byte].decode().strip().lower()

    used, defined = set(), set(AUTOMATIC)
    for node in _walk(block):
        if node.type == 'variable' and not text(node).startswith('$env:'):
            used.add(text(node))
        elif node.type == 'assignment_expression':
            defined.add(text(node.children[0]))
        elif node.type == 'foreach_statement':
            defined.update(text(c) for c in node.children if c.type == 'variable')
        elif node.type == 'param_block':
            defined.update(text(n) for n in _walk(node) if n.type == 'variable')
    return sorted(used - defined)


def test_the_restore_the_scheduled_task_runs_uses_none_of_the_modules_variables():
    source = MODULE.read_bytes()
    dummy, block = script_block(source, 'restoreScript')
    assert foreign_variables(source, block) == []


def test_a_module_variable_in_the_restore_would_be_caught():
    source = b"$group = 'g'\n$restoreScript = {\n    param([string]$Id)\n    $x = 1\n    Get-NetFirewallRule -Group $group\n}\n"
    dummy, block = script_block(source, 'restoreScript')
    assert foreign_variables(source, block) == ['$group']


def test_the_scheduled_tasks_command_line_fits_windows_limit():
    source = MODULE.read_bytes()
    inner, dummy = script_block(source, 'restoreScript')
    # "$restoreScript" in a string is the block's text without its braces; the module wraps it as below.
    command = "& { %s } -Id '%s'" % (inner[1:-1], wf.new_id())
    encoded = base64.b64encode(command.encode('utf-16-le')).decode('ascii')
    line = '"%s" -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand %s' % (POWERSHELL, encoded)
    assert len(line) < COMMAND_LINE_LIMIT // 2, len(line)  # and room to grow
    assert "\"& { $restoreScript } -Id '$id'\"" in MODULE.read_text(), 'the module no longer builds the command this way'


def test_the_module_accepts_exactly_the_ids_the_controller_makes():
    text = MODULE.read_text()
    pattern = re.search(r"\$id -notmatch '([^']+)'", text).group(1)
    assert all(re.match(pattern, wf.new_id()) for dummy in range(50))
    for bad in ("0123456789ab'; Remove-Item C:\\ -Recurse; '", '0123456789AB', '0123456789a', ''):
        assert not re.match(pattern, bad), bad


def test_the_restore_and_the_module_use_the_same_record_and_the_actions_the_controller_sends():
    text = MODULE.read_text()
    keys = set(re.findall(r"\$pendingKey = '([^']+)'", text))
    assert keys == {'HKLM:\\SOFTWARE\\tunnelwall\\egress'}, keys
    assert len(re.findall(r"\$pendingKey = '", text)) == 2  # the module's and the restore's own copy
    for action in ('confirm', 'restore'):
        assert "$prepared.action -eq '%s'" % action in text
    # Every field of the transaction the module reads is one the controller sends, and the other way round.
    request = wf.egress_request.build({'rules': [], 'confirm_timeout': 60}, 'windows')
    sent = set(wf.transaction_args(request, wf.new_id(), True))
    assert set(re.findall(r'\$txn\.(\w+)', text)) == sent, sent


def test_settle_confirm_restore_and_the_scheduled_task_claim_a_change_atomically():
    """Whoever comes first claims change ID with New-Item *without* -Force (it fails on an existing key): the
    restore's own copy, run by the scheduled task, and the module's confirmation use the same key."""
    source = MODULE.read_bytes()
    inner, dummy = script_block(source, 'restoreScript')
    assert "$claim = $pendingKey + '\\claims\\' + $record.id" in inner
    claims = re.findall(r'New-Item -Path \$claim[^\n]*', inner)
    assert claims == ['New-Item -Path $claim -ErrorAction Stop | Out-Null'], claims  # no -Force: test-and-set
    # Re-read under the claim, released in a finally whatever happens.
    assert inner.index('New-Item -Path $claim') < inner.index("Read again under the claim") < inner.index('Set-NetFirewallProfile')
    assert re.search(r"finally \{[^}]*Remove-Item -LiteralPath \$claim", inner)
    text = MODULE.read_text()
    enter = re.search(r'Function Enter-Claim \{.*?\n\}', text, re.S).group(0)
    assert "New-Item -Path ($pendingKey + '\\claims\\' + $Id) -ErrorAction Stop" in enter and '-Force |' in enter.split('try')[0]
    confirm = re.search(r'Function Remove-Pending \{.*?\n\}', text, re.S).group(0)
    assert '(Enter-Claim -Id $id)' in confirm and 'Exit-Claim -Id $id' in confirm
    assert "$module.Result.confirmed = [bool](Remove-Pending)" in text


def test_changed_profiles_are_compared_and_updated():
    text = MODULE.read_text()
    assert '(ConvertTo-ProfileSet -Profiles $before[$_].profiles) -ne (ConvertTo-ProfileSet -Profiles $profiles)' in text
    update = re.search(r'Set-NetFirewallRule -Name \$before\[\$key\]\.name[^\n]*\n[^\n]*', text).group(0)
    assert '-Profile $profiles' in update


def test_a_group_with_rules_the_module_did_not_create_is_refused_before_any_change():
    text = MODULE.read_text()
    check = text.index("holds rules this module did not create")
    assert check < text.index('New-ItemProperty -LiteralPath $pendingKey -Name pending')  # before the record
    assert "$marker = 'Managed by tunnelwall.cloudflared'" in text
    assert text.count("-Description 'Managed by tunnelwall.cloudflared'") == 2  # what apply and restore write


def test_the_origins_step_reads_only_and_answers_what_the_controller_parses():
    """The read-only origins step (cloudflared's config and origin names, read and resolved on the host): handled
    before the transaction id is even looked at, it changes nothing, and it reads the options the controller sends
    and returns the keys the controller reads."""
    text = MODULE.read_text()
    start = text.index("if ($prepared.action -eq 'origins') {")
    end = text.index('$module.ExitJson()', start)
    block = text[start:end]
    assert start < text.index('$txn = $prepared.transaction') < text.index("$prepared.action -eq 'confirm'")
    for verb in ('New-', 'Set-', 'Remove-', 'Register-', 'Unregister-', 'Disable-', 'Enable-'):
        assert re.search(r'\b%s[A-Z]' % verb, block) is None, verb
    assert set(re.findall(r'\$prepared\.(\w+)', block)) - {'action'} == set(wf.origins_args()) - {'action'}
    assert "'HKLM:\\SYSTEM\\CurrentControlSet\\Services\\' + [string]$prepared.service" in block
    assert 'ProfileList' in block and "'localsystem' = 'S-1-5-18'" in block
    # What the controller reads of the service (windows_config) is what the module returns.
    service = re.search(r'\$found\.service = @\{(.*?)\n            \}', block, re.S).group(1)
    keys = set(re.findall(r'^\s*(\w+) = ', service, re.M))
    assert keys == {'name', 'image_path', 'account', 'profile', 'cfdpath', 'program_files_x86'}, keys
    source = (pathlib.Path(wf.__file__).read_text())
    used = set(re.findall(r"service\.get\('(\w+)'", source))
    assert used <= keys, used - keys
    assert '$found = @{ service = $null; file = $null; resolved = @{}; unresolved = @{} }' in block
    assert '[System.Net.Dns]::GetHostAddresses' in block and '[System.IO.File]::ReadAllText' in block


def test_the_read_step_comes_after_the_functions_it_uses_and_changes_nothing():
    text = MODULE.read_text()
    start = text.index("if ($prepared.action -eq 'read') {")
    block = text[start:text.index('$module.ExitJson()', start)]
    assert text.index('Function Get-GroupRule {') < start < text.index('$txn = $prepared.transaction')
    assert text.index('Function ConvertTo-CanonicalAddress {') < start
    for verb in ('New-', 'Set-', 'Remove-', 'Register-', 'Unregister-'):
        assert re.search(r'\b%s[A-Z]' % verb, block) is None, verb
    assert set(re.findall(r'(\w+) = (?:@\()?\$current\[\$_\]\.', block)) >= {'display_name', 'addresses', 'description'}
    assert wf.read_args('n') == {'action': 'read', 'group': 'n cloudflared'}
    assert "$marker = 'Managed by tunnelwall.cloudflared'" in text and wf.MARKER == 'Managed by tunnelwall.cloudflared'


def test_every_result_names_the_module_and_no_message_repeats_its_name():
    """module is set right after Create, before the first FailJson or ExitJson: every result the module reports
    carries it (an unhandled exception's result, made by ansible-core's wrapper, does not); messages start with what
    happened, not with the module's name."""
    text = MODULE.read_text()
    assert "$module.Result.module = '%s'" % wf.MODULE in text
    named = text.index('$module.Result.module = ')
    assert text.index('$module = [Ansible.Basic.AnsibleModule]::Create(') < named
    assert named < min(text.index('$module.FailJson('), text.index('$module.ExitJson('))
    messages = re.findall(r'\$module\.FailJson\("([^"]*)"', text)
    assert len(messages) == text.count('$module.FailJson(') >= 7, messages
    assert not [m for m in messages if m.startswith('win_firewall_egress')], messages


def test_a_failed_apply_says_whether_it_rolled_back():
    """The apply's catch restores from the record: its failure carries rolled_back - true when the restore ran,
    false when it failed - so the role never says "Nothing to roll back" about a half-applied change."""
    text = MODULE.read_text()
    catch = text[text.rindex('$message = & $restoreScript -Id $id'):text.rindex('$module.FailJson(')]
    restored, failed = catch.split('catch {', 1)
    assert '$module.Result.rolled_back = $true' in restored and '$module.Result.rolled_back = $false' in failed, catch


def test_the_connect_step_reads_only_connects_at_once_with_a_deadline_and_returns_raw_error_codes():
    """The origins' check after the change: the host connects, the controller judges (windows_firewall.OriginCheck).
    Handled before the transaction is looked at; changes nothing; every connect starts before the first wait, all
    share the deadline of ``timeout``; each row carries what connect_outcome reads (the Winsock error code, no
    verdict)."""
    source = MODULE.read_bytes()
    text = source.decode()
    start = text.index("if ($prepared.action -eq 'connect') {")
    block = text[start:text.index('$module.ExitJson()', start)]
    assert start < text.index('$txn = $prepared.transaction')
    for verb in ('New-', 'Set-', 'Remove-', 'Register-', 'Unregister-', 'Disable-', 'Enable-'):
        assert re.search(r'\b%s[A-Z]' % verb, block) is None, verb
    assert set(re.findall(r'\$prepared\.(\w+)', block)) - {'action'} == set(wf.connect_args([])) - {'action'}
    assert set(re.findall(r'\$target\.(\w+)', block)) == set(wf.connect_args([('192.0.2.1', 80)])['targets'][0])
    # All started (ConnectAsync) before any is waited for; the wait is what is left of one deadline.
    assert block.index('.ConnectAsync(') < block.index('.Wait(')
    assert '$timeoutMs = [int]([double]$prepared.timeout * 1000)' in block
    assert '$left = [Math]::Max(0, $timeoutMs - [int]$started.ElapsedMilliseconds)' in block
    assert '$entry.task.Wait($left)' in block and '$entry.client.Close()' in block.split('finally {', 1)[1]
    # A connect that fails at once throws from ConnectAsync itself (.NET Framework's BeginConnect): kept, not lost.
    assert re.search(r'try \{[^}]*ConnectAsync[^}]*\}\s*catch \{[^}]*\$entry\.failure = \$_\.Exception', block, re.S)
    assert 'if ($entry.failure) { throw $entry.failure }' in block
    # The raw answer: the SocketException's code, never a judgement (no 'blocked', no 'reachable').
    assert '[System.Net.Sockets.SocketException]' in block and '$row.error = [int]$cause.ErrorCode' in block
    assert '$cause = $_.Exception.GetBaseException()' in block
    assert not re.search(r"'(blocked|reachable|refused)'", block)
    row = re.search(r'\$row = @\{(.*?)\}', block, re.S).group(1)
    keys = set(re.findall(r'(\w+) = ', row))
    assert keys == {'address', 'port', 'connected', 'error', 'timed_out', 'message'}, keys
    read = set(re.findall(r"row\.get\('(\w+)'", pathlib.Path(wf.__file__).read_text()))
    assert read <= keys, read - keys
    assert '$module.Result.connects = $connects' in block
    # The whole script still parses (tree-sitter's PowerShell grammar): no syntax error in what cannot run here.
    tree = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language())).parse(source)
    assert not tree.root_node.has_error
