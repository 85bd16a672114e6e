#!powershell

# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic

# Runs behind the win_firewall_egress action plugin, which validates the options and
# computes the wanted rules (canonical CIDR addresses, sorted). This module reads the
# rules of one group, reconciles them, and sets the default outbound action.

$spec = @{
    options = @{
        prepared = @{ type = 'dict'; required = $true }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$prepared = $module.Params.prepared
$group = [string]$prepared.group
$profiles = @($prepared.profiles)
# Where the outbound action found before the first default_deny is kept, for state=absent.
$stateKey = 'HKLM:\SOFTWARE\tunnelwall\cloudflared\' + ($group -replace '[^A-Za-z0-9 _.-]', '_')

Function ConvertTo-CanonicalAddress {
    <# Windows gives 198.51.100.7 for /32 and 198.51.100.0/255.255.255.0 for /24; compare in CIDR form. #>
    param([string]$Text)
    $address, $mask = $Text.Split('/', 2)
    $ip = [System.Net.IPAddress]::Parse($address)
    $bits = if ($ip.AddressFamily -eq 'InterNetworkV6') { 128 } else { 32 }
    $length = $bits
    if ($mask) {
        if ($mask.Contains('.')) {
            $length = 0
            foreach ($byte in [System.Net.IPAddress]::Parse($mask).GetAddressBytes()) {
                for ($bit = 7; $bit -ge 0; $bit--) {
                    if ($byte -band (1 -shl $bit)) { $length++ }
                }
            }
        }
        else {
            $length = [int]$mask
        }
    }
    $bytes = $ip.GetAddressBytes()
    for ($index = 0; $index -lt $bytes.Length; $index++) {
        $keep = [Math]::Max(0, [Math]::Min(8, $length - 8 * $index))
        $bytes[$index] = $bytes[$index] -band ((0xFF -shl (8 - $keep)) -band 0xFF)
    }
    '{0}/{1}' -f ([System.Net.IPAddress]::new($bytes)).ToString(), $length
}

Function Get-GroupRule {
    <# The group's rules as plain data, keyed by display name. #>
    $found = @{}
    foreach ($rule in @(Get-NetFirewallRule -Group $group -ErrorAction SilentlyContinue)) {
        $ports = $rule | Get-NetFirewallPortFilter
        $addresses = @(($rule | Get-NetFirewallAddressFilter).RemoteAddress | Where-Object { $_ -and $_ -ne 'Any' } |
            ForEach-Object { ConvertTo-CanonicalAddress -Text $_ } | Sort-Object -Unique)
        $found[$rule.DisplayName] = @{
            display_name = $rule.DisplayName
            protocol = ([string]$ports.Protocol).ToLowerInvariant()
            port = [string]$ports.RemotePort
            addresses = $addresses
            profiles = [string]$rule.Profile
            enabled = [string]$rule.Enabled
            name = $rule.Name
        }
    }
    $found
}

Function Get-OutboundAction {
    $actions = @{}
    foreach ($entry in @(Get-NetFirewallProfile -Name $profiles)) {
        $actions[[string]$entry.Name] = [string]$entry.DefaultOutboundAction
    }
    $actions
}

$before = Get-GroupRule
$wanted = @{}
foreach ($rule in @($prepared.rules)) {
    $wanted[$rule.display_name] = $rule
}
$profileText = ($profiles | Sort-Object) -join ', '

$toAdd = @($wanted.Keys | Where-Object { -not $before.ContainsKey($_) } | Sort-Object)
$toRemove = @($before.Keys | Where-Object { -not $wanted.ContainsKey($_) } | Sort-Object)
$toUpdate = @($wanted.Keys | Where-Object {
        $before.ContainsKey($_) -and (
            (($before[$_].addresses -join ',') -ne (@($wanted[$_].addresses) -join ',')) -or
            ($before[$_].protocol -ne $wanted[$_].protocol) -or ($before[$_].port -ne [string]$wanted[$_].port) -or
            ($before[$_].enabled -ne 'True'))
    } | Sort-Object)

$actionsBefore = Get-OutboundAction
$actionsAfter = @{}
foreach ($name in $actionsBefore.Keys) {
    $actionsAfter[$name] = $actionsBefore[$name]
}
if ($prepared.state -eq 'present' -and $prepared.default_deny) {
    foreach ($name in $profiles) { $actionsAfter[$name] = 'Block' }
}
elseif (Test-Path -LiteralPath $stateKey) {
    # Not (or no longer) denying: give back what the profiles had before we set Block.
    $saved = Get-ItemProperty -LiteralPath $stateKey
    foreach ($name in $profiles) {
        if ($saved.PSObject.Properties.Name -contains $name) { $actionsAfter[$name] = [string]$saved.$name }
    }
}
$policyChanges = @($profiles | Where-Object { $actionsAfter[$_] -ne $actionsBefore[$_] })

$module.Result.added = $toAdd
$module.Result.removed = $toRemove
$module.Result.updated = $toUpdate
$module.Result.outbound_action = @{ before = $actionsBefore; after = $actionsAfter }
$module.Result.changed = ($toAdd.Count + $toRemove.Count + $toUpdate.Count + $policyChanges.Count) -gt 0
$module.Diff.before = @{ rules = @($before.Keys | Sort-Object | ForEach-Object { $before[$_] }); outbound_action = $actionsBefore }
$module.Diff.after = @{ rules = @($wanted.Keys | Sort-Object | ForEach-Object { $wanted[$_] }); outbound_action = $actionsAfter }

if ($module.CheckMode -or -not $module.Result.changed) {
    $module.ExitJson()
}

# Allow rules go in before the default action blocks, and come out after it is given back,
# so the host never passes through a state that blocks the tunnel.
$done = @()
try {
    foreach ($key in $toAdd) {
        $rule = $wanted[$key]
        $made = New-NetFirewallRule -DisplayName $key -Group $group -Direction Outbound -Action Allow `
            -Protocol $rule.protocol.ToUpperInvariant() -RemotePort ([string]$rule.port) `
            -RemoteAddress @($rule.addresses) -Profile $profiles -Description 'Managed by tunnelwall.cloudflared' -ErrorAction Stop
        $done += , @('added', $made.Name)
    }
    foreach ($key in $toUpdate) {
        $rule = $wanted[$key]
        Set-NetFirewallRule -Name $before[$key].name -Enabled True -Protocol $rule.protocol.ToUpperInvariant() `
            -RemotePort ([string]$rule.port) -RemoteAddress @($rule.addresses) -ErrorAction Stop
        $done += , @('updated', $key)
    }
    if ($policyChanges.Count -gt 0) {
        if ($actionsAfter.Values -contains 'Block' -and -not (Test-Path -LiteralPath $stateKey)) {
            New-Item -Path $stateKey -Force | Out-Null
            foreach ($name in $profiles) {
                New-ItemProperty -LiteralPath $stateKey -Name $name -Value $actionsBefore[$name] -Force | Out-Null
            }
        }
        foreach ($name in $policyChanges) {
            Set-NetFirewallProfile -Name $name -DefaultOutboundAction $actionsAfter[$name] -ErrorAction Stop
        }
        if (-not ($actionsAfter.Values -contains 'Block') -and (Test-Path -LiteralPath $stateKey)) {
            Remove-Item -LiteralPath $stateKey -Force
        }
    }
    foreach ($key in $toRemove) {
        Remove-NetFirewallRule -Name $before[$key].name -ErrorAction Stop
    }
}
catch {
    # Never half-applied: put back the default actions, remove what this run added, restore what it changed.
    foreach ($name in $actionsBefore.Keys) {
        Set-NetFirewallProfile -Name $name -DefaultOutboundAction $actionsBefore[$name] -ErrorAction SilentlyContinue
    }
    foreach ($step in $done) {
        if ($step[0] -eq 'added') {
            Remove-NetFirewallRule -Name $step[1] -ErrorAction SilentlyContinue
        }
        else {
            $old = $before[$step[1]]
            Set-NetFirewallRule -Name $old.name -Protocol $old.protocol.ToUpperInvariant() -RemotePort $old.port `
                -RemoteAddress @($old.addresses) -ErrorAction SilentlyContinue
        }
    }
    $module.FailJson("win_firewall_egress: $($_.Exception.Message); the previous rules and default actions were restored", $_)
}
$module.ExitJson()
