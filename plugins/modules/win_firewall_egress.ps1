#!powershell

# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic

# Runs behind the win_firewall_egress action plugin, which validates the options, computes the wanted rules
# (canonical CIDR addresses, sorted) and drives the transaction: prepared.action is
#   origins - read only: the Cloudflared service's ImagePath and account profile, cloudflared's config (its text) and
#             the addresses of origin names, for the controller to parse and resolve with;
#   connect - read only: a TCP connect to each origin address and port, all at once, each bounded by the timeout;
#             returns what happened (connected, or the Winsock error code) - the controller judges (origins.judge);
#   read    - read only: the group's rules (egress_firewall_info's drift on Windows);
#   apply   - settle a change a dead run left, read and record the group's rules and the default outbound actions,
#             arm the dead-man scheduled task, reconcile; confirm at once when nothing will verify;
#   confirm - the change was verified: remove the record and the scheduled task;
#   restore - verification failed: put the record back (the same script the scheduled task runs).

$spec = @{
    options = @{
        prepared = @{ type = 'dict'; required = $true }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
# In every result, success or failure: the action plugin and the role tell a failure this code reported (it has
# module) from one it never got to report (an unhandled exception, a lost connection).
$module.Result.module = 'tunnelwall.cloudflared.win_firewall_egress'
$prepared = $module.Params.prepared
$group = [string]$prepared.group
$profiles = @($prepared.profiles)

if ($prepared.action -eq 'origins') {
    # Read-only, check mode too: what the controller must not read or resolve itself. It parses the config with the
    # same Python code as on Linux (plugin_utils/windows_firewall.py discover_origins): no YAML here.
    #   service - the registry values of that service (ImagePath, account) and the account's profile directory;
    #   read    - the text of the first of these files that exists;
    #   resolve - the addresses of these names, with this host's resolver.
    $found = @{ service = $null; file = $null; resolved = @{}; unresolved = @{} }
    if ($prepared.service) {
        $serviceKey = 'HKLM:\SYSTEM\CurrentControlSet\Services\' + [string]$prepared.service
        $item = Get-ItemProperty -LiteralPath $serviceKey -ErrorAction SilentlyContinue
        if ($item) {
            $account = if ($item.PSObject.Properties.Name -contains 'ObjectName') { [string]$item.ObjectName } else { '' }
            # The profile (%USERPROFILE%) of the account the service runs as: LocalSystem's is
            # C:\Windows\System32\config\systemprofile (ProfileList of S-1-5-18).
            $wellKnown = @{ '' = 'S-1-5-18'; 'localsystem' = 'S-1-5-18'; 'nt authority\system' = 'S-1-5-18'
                'nt authority\localservice' = 'S-1-5-19'; 'nt authority\networkservice' = 'S-1-5-20' }
            $sid = $wellKnown[$account.ToLowerInvariant()]
            if (-not $sid) {
                try {
                    $sid = ([System.Security.Principal.NTAccount]$account).Translate([System.Security.Principal.SecurityIdentifier]).Value
                }
                catch {
                    $sid = $null
                }
            }
            $userProfile = $null
            if ($sid) {
                $profileKey = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList\' + $sid
                $profileItem = Get-ItemProperty -LiteralPath $profileKey -ErrorAction SilentlyContinue
                if ($profileItem) { $userProfile = [Environment]::ExpandEnvironmentVariables([string]$profileItem.ProfileImagePath) }
            }
            $found.service = @{
                name = [string]$prepared.service
                image_path = [string]$item.ImagePath
                account = $account
                profile = $userProfile
                cfdpath = [Environment]::GetEnvironmentVariable('CFDPATH', 'Machine')
                program_files_x86 = [Environment]::GetEnvironmentVariable('ProgramFiles(x86)')
            }
        }
    }
    foreach ($path in @($prepared.read)) {
        if ($path -and (Test-Path -LiteralPath $path -PathType Leaf)) {
            try {
                $found.file = @{ path = [string]$path; text = [System.IO.File]::ReadAllText([string]$path) }
            }
            catch {
                $module.FailJson("cannot read cloudflared's config $($path): $($_.Exception.Message); nothing was changed", $_)
            }
            break
        }
    }
    foreach ($name in @($prepared.resolve)) {
        if (-not $name) { continue }
        try {
            $found.resolved[[string]$name] = @([System.Net.Dns]::GetHostAddresses([string]$name) |
                ForEach-Object { $_.IPAddressToString })
        }
        catch {
            $found.unresolved[[string]$name] = $_.Exception.Message
        }
    }
    $module.Result.origins = $found
    $module.ExitJson()
}

if ($prepared.action -eq 'connect') {
    # Read-only, after the change (check mode never gets here): the controller's origins check
    # (plugin_utils/windows_firewall.py OriginCheck). Every connect starts at once and all share one deadline, so a
    # blocked origin costs the timeout once. Raw results only: connected, or the socket error code
    # (10013 WSAEACCES, 10061 WSAECONNREFUSED, 10060 WSAETIMEDOUT, 10065 WSAEHOSTUNREACH ...), or timed_out.
    $timeoutMs = [int]([double]$prepared.timeout * 1000)
    $started = [System.Diagnostics.Stopwatch]::StartNew()
    $pending = @(foreach ($target in @($prepared.targets)) {
            $entry = @{ target = $target; client = $null; task = $null; failure = $null }
            try {
                $address = [System.Net.IPAddress]::Parse([string]$target.address)
                $entry.client = [System.Net.Sockets.TcpClient]::new($address.AddressFamily)
                $entry.task = $entry.client.ConnectAsync($address, [int]$target.port)
            }
            catch {
                # .NET Framework's BeginConnect throws at once for a connect that fails at once (a refusal by the
                # Windows Filtering Platform may): kept for its row, like a faulted task's.
                $entry.failure = $_.Exception
            }
            $entry
        })
    $connects = @(foreach ($entry in $pending) {
            $row = @{ address = [string]$entry.target.address; port = [int]$entry.target.port; connected = $false
                error = $null; timed_out = $false; message = $null }
            $left = [Math]::Max(0, $timeoutMs - [int]$started.ElapsedMilliseconds)
            try {
                if ($entry.failure) { throw $entry.failure }
                $done = $entry.task.Wait($left)
                $row.connected = $done
                $row.timed_out = -not $done
            }
            catch {
                # A faulted connect: Wait throws an AggregateException around the SocketException (the innermost).
                $cause = $_.Exception.GetBaseException()
                if ($cause -is [System.Net.Sockets.SocketException]) {
                    $row.error = [int]$cause.ErrorCode
                }
                $row.message = $cause.Message
            }
            finally {
                if ($entry.client) { $entry.client.Close() }
            }
            $row
        })
    $module.Result.connects = $connects
    $module.ExitJson()
}

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
    <# The group's rules as plain data, keyed by display name: what is compared, recorded and restored. #>
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
            description = [string]$rule.Description
        }
    }
    $found
}

if ($prepared.action -eq 'read') {
    # Read-only, check mode too: the group's rules as the controller compares them (egress_firewall_info's drift on
    # Windows: plugin_utils/windows_firewall.py applied_from_rules).
    $current = Get-GroupRule
    $module.Result.rules = @($current.Keys | Sort-Object | ForEach-Object {
            @{ display_name = $current[$_].display_name; protocol = $current[$_].protocol; port = $current[$_].port
                addresses = @($current[$_].addresses); description = $current[$_].description }
        })
    $module.ExitJson()
}

$txn = $prepared.transaction
$id = [string]$txn.id
if ($id -notmatch '^[0-9a-f]{12}$') {
    # The id goes into the scheduled task's command line: nothing but what the action plugin makes.
    $module.FailJson("transaction id '$id' is not 12 hex digits")
}
# Where the outbound action found before the first default_deny is kept, for state=absent.
$stateKey = 'HKLM:\SOFTWARE\tunnelwall\cloudflared\' + ($group -replace '[^A-Za-z0-9 _.-]', '_')
# One pending change per host, whatever the group: the host-wide lock of the transaction. HKLM only admins write.
$pendingKey = 'HKLM:\SOFTWARE\tunnelwall\egress'
$marker = 'Managed by tunnelwall.cloudflared'

# The restore, self-contained: the module runs it when a change fails, and the dead-man scheduled task runs the same
# text (-EncodedCommand). It puts back the recorded rules of the group and the outbound actions, then removes the
# record and the task; an error stops it before the record goes, so the next run restores again.
# Whoever of settle, confirm, restore or the scheduled task comes first claims the change: New-Item without -Force
# on HKLM:\SOFTWARE\tunnelwall\egress\claims\ID fails when the key exists (test-and-set), so a change is never
# restored twice (duplicated rules) nor confirmed while it is being restored.
$restoreScript = {
    param([string]$Id)
    $ErrorActionPreference = 'Stop'
    $pendingKey = 'HKLM:\SOFTWARE\tunnelwall\egress'
    # -Name: no object at all when the value is missing (no missing property to read, strict mode or not).
    $item = Get-ItemProperty -LiteralPath $pendingKey -Name pending -ErrorAction SilentlyContinue
    if (-not $item) { return 'nothing was pending' }
    $text = $item.pending
    $record = ConvertFrom-Json -InputObject $text
    if ($Id -and $record.id -ne $Id) { return "the pending change is $($record.id), not $Id; left alone" }
    $claim = $pendingKey + '\claims\' + $record.id
    New-Item -Path ($pendingKey + '\claims') -Force | Out-Null
    try {
        New-Item -Path $claim -ErrorAction Stop | Out-Null
    }
    catch {
        return "change $($record.id) is being confirmed or restored by another run or its scheduled task; left alone"
    }
    try {
        # Read again under the claim: a confirmation may have removed it between the first read and the claim.
        $item = Get-ItemProperty -LiteralPath $pendingKey -Name pending -ErrorAction SilentlyContinue
        if (-not $item -or (ConvertFrom-Json -InputObject $item.pending).id -ne $record.id) { return 'nothing was pending' }
        # The outbound actions first (usually Allow again), the recorded rules next, the current ones last: no moment
        # blocks with fewer allow rules than before or after.
        $current = @(Get-NetFirewallRule -Group $record.group -ErrorAction SilentlyContinue)
        foreach ($entry in $record.outbound.PSObject.Properties) {
            Set-NetFirewallProfile -Name $entry.Name -DefaultOutboundAction $entry.Value
        }
        foreach ($rule in @($record.rules)) {
            $addresses = @($rule.addresses)
            if ($addresses.Count -eq 0) { $addresses = @('Any') }
            $port = if ($rule.port) { [string]$rule.port } else { 'Any' }
            New-NetFirewallRule -DisplayName $rule.display_name -Group $record.group -Direction Outbound -Action Allow `
                -Protocol ([string]$rule.protocol).ToUpperInvariant() -RemotePort $port -RemoteAddress $addresses `
                -Profile $rule.profiles -Enabled $rule.enabled -Description 'Managed by tunnelwall.cloudflared' | Out-Null
        }
        $current | Remove-NetFirewallRule
        if ($record.saved) {
            New-Item -Path $record.saved_key -Force | Out-Null
            foreach ($entry in $record.saved.PSObject.Properties) {
                New-ItemProperty -LiteralPath $record.saved_key -Name $entry.Name -Value $entry.Value -Force | Out-Null
            }
        }
        elseif (Test-Path -LiteralPath $record.saved_key) {
            Remove-Item -LiteralPath $record.saved_key -Force
        }
        Remove-ItemProperty -LiteralPath $pendingKey -Name pending
        Unregister-ScheduledTask -TaskPath $record.task_path -TaskName $record.task_name -Confirm:$false -ErrorAction SilentlyContinue
        "restored the $(@($record.rules).Count) rule(s) of group '$($record.group)' and the default outbound actions"
    }
    finally {
        # Done (the record is gone) or failed (it stays): either way the next one may claim it again.
        Remove-Item -LiteralPath $claim -Force -ErrorAction SilentlyContinue
    }
}

Function Get-Pending {
    $item = Get-ItemProperty -LiteralPath $pendingKey -Name pending -ErrorAction SilentlyContinue
    if ($item) { ConvertFrom-Json -InputObject $item.pending } else { $null }
}

Function Enter-Claim {
    <# Test-and-set: $true for the first to claim change $Id (New-Item without -Force fails on an existing key). #>
    param([string]$Id)
    New-Item -Path ($pendingKey + '\claims') -Force | Out-Null
    try {
        New-Item -Path ($pendingKey + '\claims\' + $Id) -ErrorAction Stop | Out-Null
        $true
    }
    catch {
        $false
    }
}

Function Exit-Claim {
    param([string]$Id)
    Remove-Item -LiteralPath ($pendingKey + '\claims\' + $Id) -Force -ErrorAction SilentlyContinue
}

Function Remove-Pending {
    <# The confirmation: the record and its scheduled task go, if they are this run's and no restore claimed them.
    Returns $true when this run confirmed. #>
    $pending = Get-Pending
    $confirmed = $false
    if ($pending -and $pending.id -eq $id -and (Enter-Claim -Id $id)) {
        try {
            # Read again under the claim: the scheduled task may have restored it in between.
            $pending = Get-Pending
            if ($pending -and $pending.id -eq $id) {
                Remove-ItemProperty -LiteralPath $pendingKey -Name pending
                $confirmed = $true
            }
        }
        finally {
            Exit-Claim -Id $id
        }
    }
    if ($confirmed -or -not (Get-Pending)) {
        Unregister-ScheduledTask -TaskPath $txn.task_path -TaskName $txn.task_name -Confirm:$false -ErrorAction SilentlyContinue
    }
    $confirmed
}

# A record that is gone was restored already - by the scheduled task when apply and verification took longer than
# confirm_timeout: the confirmation must not claim a change that is no longer there.
$gone = "change $id is no longer pending: the scheduled task restored it already (is confirm_timeout shorter than the apply and the verification?)"
if ($prepared.action -eq 'confirm') {
    $module.Result.confirmed = [bool](Remove-Pending)
    if (-not $module.Result.confirmed) { $module.Result.message = $gone }
    $module.ExitJson()
}
if ($prepared.action -eq 'restore') {
    $pending = Get-Pending
    $module.Result.restored = [bool]($pending -and $pending.id -eq $id)
    if (-not $module.Result.restored) {
        $module.Result.message = $gone
        $module.ExitJson()
    }
    try {
        $module.Result.message = & $restoreScript -Id $id
    }
    catch {
        $module.FailJson("the restore failed: $($_.Exception.Message); the record stays for the scheduled task and the next run", $_)
    }
    # Another party (the scheduled task) may have claimed it first: then it restored, not this run.
    $module.Result.restored = [bool]($module.Result.message -like 'restored *')
    $module.Result.changed = $module.Result.restored
    $module.ExitJson()
}

$now = [DateTimeOffset]::UtcNow
$module.Result.transaction = @{ settled = $null; armed = $null; confirmed = $false }
if (-not $module.CheckMode) {
    $pending = Get-Pending
    if ($pending -and [long]$pending.expires -gt $now.ToUnixTimeSeconds()) {
        # Another run's change waits for its verdict: the action plugin waits (lock_timeout) and asks again.
        $module.Result.busy = @{ id = $pending.id; group = $pending.group; started = $pending.started
            expires = [DateTimeOffset]::FromUnixTimeSeconds([long]$pending.expires).ToString('o') }
        $module.ExitJson()
    }
    if ($pending) {
        try {
            $message = & $restoreScript -Id $pending.id
        }
        catch {
            $module.FailJson("a previous run ($($pending.id)) left an unconfirmed change that cannot be restored: $($_.Exception.Message); nothing was changed", $_)
        }
        if ($message -like 'change * is being confirmed or restored*') {
            # Its scheduled task is restoring it right now: wait for the verdict like for a running change.
            $module.Result.busy = @{ id = $pending.id; group = $pending.group; started = $pending.started
                expires = [DateTimeOffset]::FromUnixTimeSeconds([long]$pending.expires).ToString('o') }
            $module.ExitJson()
        }
        $module.Result.transaction.settled = "a previous run ($($pending.id), started $($pending.started)) never confirmed its change: $message"
        $module.Warn($module.Result.transaction.settled)
    }
}

Function ConvertTo-ProfileSet {
    <# 'Domain, Private' or @('Private', 'Domain') -> 'Domain,Private'; Any is every profile. #>
    param($Profiles)
    $names = @(@($Profiles) | ForEach-Object { ([string]$_).Split(',') } | ForEach-Object { $_.Trim() } | Where-Object { $_ })
    if ($names -contains 'Any') { $names = @('Domain', 'Private', 'Public') }
    (@($names | Sort-Object -Unique)) -join ','
}

Function Get-OutboundAction {
    $actions = @{}
    foreach ($entry in @(Get-NetFirewallProfile -Name $profiles)) {
        $actions[[string]$entry.Name] = [string]$entry.DefaultOutboundAction
    }
    $actions
}

$before = Get-GroupRule
# The ownership marker: every rule this module creates carries it. A rule of the group without it is someone else's.
$foreign = @($before.Values | Where-Object { $_.description -ne $marker } | ForEach-Object { $_.display_name } | Sort-Object)
if ($foreign.Count -gt 0) {
    $module.FailJson("the rule group '$group' holds rules this module did not create (no description '$marker'): $($foreign -join ', '); choose another name. Nothing was changed")
}
$wanted = @{}
foreach ($rule in @($prepared.rules)) {
    $wanted[$rule.display_name] = $rule
}

$toAdd = @($wanted.Keys | Where-Object { -not $before.ContainsKey($_) } | Sort-Object)
$toRemove = @($before.Keys | Where-Object { -not $wanted.ContainsKey($_) } | Sort-Object)
$toUpdate = @($wanted.Keys | Where-Object {
        $before.ContainsKey($_) -and (
            (($before[$_].addresses -join ',') -ne (@($wanted[$_].addresses) -join ',')) -or
            ($before[$_].protocol -ne $wanted[$_].protocol) -or ($before[$_].port -ne [string]$wanted[$_].port) -or
            ((ConvertTo-ProfileSet -Profiles $before[$_].profiles) -ne (ConvertTo-ProfileSet -Profiles $profiles)) -or
            ($before[$_].enabled -ne 'True'))
    } | Sort-Object)

$actionsBefore = Get-OutboundAction
$actionsAfter = @{}
foreach ($name in $actionsBefore.Keys) {
    $actionsAfter[$name] = $actionsBefore[$name]
}
$saved = $null
if (Test-Path -LiteralPath $stateKey) {
    $savedItem = Get-ItemProperty -LiteralPath $stateKey
    $saved = @{}
    foreach ($name in @('Domain', 'Private', 'Public')) {
        if ($savedItem.PSObject.Properties.Name -contains $name) { $saved[$name] = [string]$savedItem.$name }
    }
}
if ($prepared.state -eq 'present' -and $prepared.default_deny) {
    foreach ($name in $profiles) { $actionsAfter[$name] = 'Block' }
}
elseif ($saved) {
    # Not (or no longer) denying: give back what the profiles had before we set Block.
    foreach ($name in $profiles) {
        if ($saved.ContainsKey($name)) { $actionsAfter[$name] = $saved[$name] }
    }
}
$policyChanges = @($profiles | Where-Object { $actionsAfter[$_] -ne $actionsBefore[$_] })

$module.Result.added = $toAdd
$module.Result.removed = $toRemove
$module.Result.updated = $toUpdate
$module.Result.outbound_action = @{ before = $actionsBefore; after = $actionsAfter }
$module.Result.changed = ($toAdd.Count + $toRemove.Count + $toUpdate.Count + $policyChanges.Count) -gt 0
$previousRules = @($before.Keys | Sort-Object | ForEach-Object { $before[$_] })
$module.Result.previous = @{ group = $group; rules = $previousRules; outbound = $actionsBefore }
$module.Diff.before = @{ rules = $previousRules; outbound_action = $actionsBefore }
$module.Diff.after = @{ rules = @($wanted.Keys | Sort-Object | ForEach-Object { $wanted[$_] }); outbound_action = $actionsAfter }

if ($module.CheckMode -or -not $module.Result.changed) {
    $module.ExitJson()
}

# Record before the first change; arm the dead-man before the first change too. The record outlives this process
# in the registry until the confirmation or a restore removes it.
$timeout = [int]$txn.confirm_timeout
# With confirm_timeout=0 nothing fires; the next run takes a record older than the default 300 s for a dead run's.
$expires = $now.AddSeconds([Math]::Max(1, $(if ($timeout -gt 0) { $timeout } else { 300 })))
$record = @{
    id = $id; group = $group; started = $now.ToString('o'); expires = $expires.ToUnixTimeSeconds()
    rules = $previousRules; outbound = $actionsBefore; saved_key = $stateKey; saved = $saved
    task_path = [string]$txn.task_path; task_name = [string]$txn.task_name
}
New-Item -Path $pendingKey -Force | Out-Null
New-ItemProperty -LiteralPath $pendingKey -Name pending -Value (ConvertTo-Json -InputObject $record -Depth 5 -Compress) -Force | Out-Null

if ($timeout -gt 0) {
    try {
        $command = "& { $restoreScript } -Id '$id'"
        $encoded = [Convert]::ToBase64String([System.Text.Encoding]::Unicode.GetBytes($command))
        $powershell = Join-Path -Path $env:SystemRoot -ChildPath 'System32\WindowsPowerShell\v1.0\powershell.exe'
        $task = @{
            TaskPath = $txn.task_path
            TaskName = $txn.task_name
            Description = "tunnelwall: restore the firewall group '$group' unless change $id is confirmed"
            Action = New-ScheduledTaskAction -Execute $powershell -Argument "-NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand $encoded"
            Trigger = New-ScheduledTaskTrigger -Once -At $expires.LocalDateTime
            Principal = New-ScheduledTaskPrincipal -UserId 'NT AUTHORITY\SYSTEM' -LogonType ServiceAccount -RunLevel Highest
            # StartWhenAvailable: a host that was down at the deadline restores as soon as it is up again.
            Settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
                -ExecutionTimeLimit (New-TimeSpan -Minutes 10)
        }
        Register-ScheduledTask @task -Force -ErrorAction Stop | Out-Null
    }
    catch {
        Remove-ItemProperty -LiteralPath $pendingKey -Name pending
        $module.FailJson("cannot arm the dead-man revert (scheduled task): $($_.Exception.Message); nothing was changed", $_)
    }
    $module.Result.transaction.armed = @{
        how = 'scheduled_task'; task_path = $txn.task_path; task_name = $txn.task_name; at = $expires.ToString('o')
        confirm_timeout = $timeout
    }
}

# Allow rules go in before the default action blocks, and come out after it is given back,
# so the host never passes through a state that blocks the tunnel.
try {
    foreach ($key in $toAdd) {
        $rule = $wanted[$key]
        New-NetFirewallRule -DisplayName $key -Group $group -Direction Outbound -Action Allow `
            -Protocol $rule.protocol.ToUpperInvariant() -RemotePort ([string]$rule.port) `
            -RemoteAddress @($rule.addresses) -Profile $profiles -Description 'Managed by tunnelwall.cloudflared' -ErrorAction Stop | Out-Null
    }
    foreach ($key in $toUpdate) {
        $rule = $wanted[$key]
        Set-NetFirewallRule -Name $before[$key].name -Enabled True -Protocol $rule.protocol.ToUpperInvariant() `
            -RemotePort ([string]$rule.port) -RemoteAddress @($rule.addresses) -Profile $profiles -ErrorAction Stop
    }
    if ($policyChanges.Count -gt 0) {
        if ($actionsAfter.Values -contains 'Block' -and -not $saved) {
            New-Item -Path $stateKey -Force | Out-Null
            foreach ($name in $profiles) {
                New-ItemProperty -LiteralPath $stateKey -Name $name -Value $actionsBefore[$name] -Force | Out-Null
            }
        }
        foreach ($name in $policyChanges) {
            Set-NetFirewallProfile -Name $name -DefaultOutboundAction $actionsAfter[$name] -ErrorAction Stop
        }
        if (-not ($actionsAfter.Values -contains 'Block') -and $saved) {
            Remove-Item -LiteralPath $stateKey -Force
        }
    }
    foreach ($key in $toRemove) {
        Remove-NetFirewallRule -Name $before[$key].name -ErrorAction Stop
    }
}
catch {
    $failure = $_
    try {
        $message = & $restoreScript -Id $id
        $module.Result.transaction.restored = $true
        $module.Result.rolled_back = $true
    }
    catch {
        $message = "RESTORE FAILED ($($_.Exception.Message)); the scheduled task and the next run try again"
        $module.Result.rolled_back = $false
    }
    $module.FailJson("$($failure.Exception.Message); $message", $failure)
}

if (-not $txn.verify) {
    # Nothing will probe: the change is confirmed as soon as it is applied (unless its task restored it already).
    $module.Result.transaction.confirmed = [bool](Remove-Pending)
}
$module.ExitJson()
