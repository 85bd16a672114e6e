#!powershell

# Copyright: tunnelwall developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

#AnsibleRequires -CSharpUtil Ansible.Basic
#AnsibleRequires -CSharpUtil ansible_collections.tunnelwall.cloudflared.plugins.module_utils.EdgeProbe

# Runs behind the win_edge_probe action plugin, which validates the user's options,
# builds the QUIC datagrams and hands this module one 'prepared' dict. This module
# only does the host's I/O: DNS through Resolve-DnsName, TCP/TLS/UDP through .NET.

$spec = @{
    options = @{
        prepared = @{ type = 'dict'; required = $true }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$prepared = $module.Params.prepared
$timeoutMs = [int]$prepared.timeout_ms
$targets = @($prepared.targets)

# Resolve-DnsName error codes (Win32) and the words edge_probe uses for them.
$dnsErrorKinds = @{
    9002 = 'servfail'
    9003 = 'nxdomain'
    9005 = 'dns_refused'
    9501 = 'no_answer'
    1460 = 'timeout'
}

$resolveScript = {
    param([string]$Name, [string]$Type, [hashtable]$Kinds)
    $watch = [System.Diagnostics.Stopwatch]::StartNew()
    $answer = @{ name = $Name; type = $Type; ok = $false; rcode = $null; answers = @(); error_kind = $null; message = '' }
    try {
        $records = @(Resolve-DnsName -Name $Name -Type $Type -DnsOnly -QuickTimeout -ErrorAction Stop |
            Where-Object { $_.Section -eq 'Answer' -and $_.Type -eq $Type })
        if ($Type -eq 'SRV') {
            $answer.answers = @($records | ForEach-Object { , @([int]$_.Priority, [int]$_.Weight, [int]$_.Port, $_.NameTarget.ToLowerInvariant()) })
        }
        elseif ($Type -eq 'TXT') {
            $answer.answers = @($records | ForEach-Object { $_.Strings -join '' } | Sort-Object -Unique)
        }
        else {
            $answer.answers = @($records | ForEach-Object { $_.IPAddress } | Sort-Object -Unique)
        }
        if ($answer.answers.Count -gt 0) {
            $answer.ok = $true
            $answer.rcode = 'NOERROR'
        }
        else {
            $answer.rcode = 'NOERROR'
            $answer.error_kind = 'no_answer'
            $answer.message = "no $Type record"
        }
    }
    catch {
        $code = $_.Exception.NativeErrorCode
        $answer.error_kind = if ($Kinds.ContainsKey($code)) { $Kinds[$code] } else { 'error' }
        $answer.message = $_.Exception.Message
    }
    $answer.latency_ms = [int]$watch.ElapsedMilliseconds
    $answer
}

# DNS questions run in a runspace pool while the probes run, so the whole module
# takes about one timeout.
$questions = @($prepared.dns_questions)
$pending = @()
$pool = $null
if ($questions.Count -gt 0) {
    $pool = [RunspaceFactory]::CreateRunspacePool(1, [Math]::Min(32, $questions.Count))
    $pool.Open()
    foreach ($question in $questions) {
        $shell = [PowerShell]::Create()
        $shell.RunspacePool = $pool
        [void]$shell.AddScript($resolveScript).AddArgument($question.name).AddArgument($question.type).AddArgument($dnsErrorKinds)
        $pending += , @{ shell = $shell; handle = $shell.BeginInvoke() }
    }
}

$families = @('ipv4', 'ipv6')
if ($prepared.ip_version -eq 'auto') {
    $families = @([ansible_collections.tunnelwall.cloudflared.plugins.module_utils.EdgeProbe.Prober]::RoutableFamilies($targets))
}
$chosen = @($targets | Where-Object { $families -contains $_.family })
$prober = New-Object -TypeName ansible_collections.tunnelwall.cloudflared.plugins.module_utils.EdgeProbe.Prober -ArgumentList @(
    $timeoutMs, [int]$prepared.concurrency, [bool]$prepared.validate_certs, [string]$prepared.ca_path,
    [System.Collections.IList]@($prepared.tunnel_roots), [int]$prepared.first_attempts)
$rows = $prober.Run([System.Collections.IList]$chosen)

$answers = @()
foreach ($job in $pending) {
    $answers += $job.shell.EndInvoke($job.handle)
    $job.shell.Dispose()
}
if ($pool) {
    $pool.Close()
}

$nameservers = @()
if ($questions.Count -gt 0) {
    $nameservers = @(Get-DnsClientServerAddress | ForEach-Object { $_.ServerAddresses } | Where-Object { $_ } | Sort-Object -Unique)
}

$module.Result.results = @($rows)
$module.Result.families = $families
$module.Result.dns = @{ nameservers = $nameservers; answers = $answers }
$module.Result.changed = $false
$module.ExitJson()
