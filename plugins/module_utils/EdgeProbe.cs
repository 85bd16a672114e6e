// Copyright: tunnelwall developers
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
//
// The I/O half of win_edge_probe: TCP connects, TLS handshakes and QUIC datagrams,
// all at once, each bounded by one timeout. The controller builds the QUIC Initial
// datagrams and reads the answers (plugin_utils/windows_probe.py); this code only
// sends bytes and returns the bytes that came back, base64-encoded.
// C# 5 only: Windows PowerShell 5.1 compiles it with the .NET Framework compiler.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Threading;
using System.Threading.Tasks;

namespace ansible_collections.tunnelwall.cloudflared.plugins.module_utils.EdgeProbe
{
    public class Prober
    {
        // SslProtocols.Tls13 is missing from older .NET Framework enums; its value is stable.
        private const SslProtocols Tls12And13 = SslProtocols.Tls12 | (SslProtocols)12288;

        private readonly int timeoutMs;
        private readonly bool validateCerts;
        // ca_path: the only roots trusted, like cloudflared's --cacert (no system store then).
        private readonly X509Certificate2Collection trustedRoots;
        // The three Cloudflare roots cloudflared adds to the system store on the tunnel port (the controller sends
        // them: module_utils/edge_trust.py).
        private readonly X509Certificate2Collection tunnelRoots = new X509Certificate2Collection();
        // How many QUIC attempts go out at once (cloudflared's tunnel flight and its pre-check's); the others only
        // when the first is unanswered after two thirds of the timeout.
        private readonly int firstAttempts;
        private readonly SemaphoreSlim slots;

        public Prober(int timeoutMs, int concurrency, bool validateCerts, string caPath, IList tunnelRootsDer, int firstAttempts)
        {
            this.timeoutMs = timeoutMs;
            this.validateCerts = validateCerts;
            this.firstAttempts = Math.Max(1, firstAttempts);
            this.slots = new SemaphoreSlim(Math.Max(1, concurrency));
            if (!String.IsNullOrEmpty(caPath))
            {
                trustedRoots = new X509Certificate2Collection();
                trustedRoots.Import(caPath);
            }
            if (tunnelRootsDer != null)
            {
                foreach (object der in tunnelRootsDer)
                    tunnelRoots.Add(new X509Certificate2(Convert.FromBase64String((string)der)));
            }
        }

        public static List<string> RoutableFamilies(IList targets)
        {
            // Connecting a UDP socket sends nothing; it only asks the routing table.
            List<string> families = new List<string>();
            foreach (string family in new string[] { "ipv4", "ipv6" })
            {
                foreach (IDictionary target in targets)
                {
                    if ((string)target["family"] != family)
                        continue;
                    try
                    {
                        using (Socket socket = new Socket(AddressFamilyOf(family), SocketType.Dgram, ProtocolType.Udp))
                        {
                            socket.Connect(IPAddress.Parse((string)target["address"]), 7844);
                        }
                        families.Add(family);
                    }
                    catch (SocketException)
                    {
                    }
                    break;
                }
            }
            return families;
        }

        public List<Hashtable> Run(IList targets)
        {
            List<Task<List<Hashtable>>> probes = new List<Task<List<Hashtable>>>();
            foreach (IDictionary target in targets)
                probes.Add(ProbeOne(target));
            Task.WaitAll(probes.ToArray());
            List<Hashtable> rows = new List<Hashtable>();
            foreach (Task<List<Hashtable>> probe in probes)
                rows.AddRange(probe.Result);
            return rows;
        }

        private static AddressFamily AddressFamilyOf(string family)
        {
            return family == "ipv6" ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
        }

        private static Hashtable Row(IDictionary target, string check, bool ok, string errorKind, string message, Stopwatch watch)
        {
            Hashtable row = new Hashtable();
            row["id"] = target["id"];
            row["check"] = check;
            row["ok"] = ok;
            row["error_kind"] = errorKind;
            row["message"] = message;
            row["latency_ms"] = (int)watch.ElapsedMilliseconds;
            return row;
        }

        private static string SocketErrorKind(SocketException error, bool udp)
        {
            switch (error.SocketErrorCode)
            {
                case SocketError.TimedOut:
                    return "timeout";
                case SocketError.ConnectionRefused:
                    return "refused";
                // Windows reports an ICMP port unreachable on a UDP socket as a reset.
                case SocketError.ConnectionReset:
                    return udp ? "refused" : "reset";
                case SocketError.HostUnreachable:
                case SocketError.NetworkUnreachable:
                case SocketError.AddressNotAvailable:
                    return "unreachable";
                case SocketError.AccessDenied:
                    return "blocked_locally";
                default:
                    return "error";
            }
        }

        private static SocketException FindSocketError(Exception error)
        {
            for (Exception current = error; current != null; current = current.InnerException)
            {
                AggregateException aggregate = current as AggregateException;
                if (aggregate != null && aggregate.InnerExceptions.Count > 0)
                    return FindSocketError(aggregate.InnerExceptions[0]);
                SocketException socketError = current as SocketException;
                if (socketError != null)
                    return socketError;
            }
            return null;
        }

        private async Task<List<Hashtable>> ProbeOne(IDictionary target)
        {
            await slots.WaitAsync().ConfigureAwait(false);
            try
            {
                if ((string)target["protocol"] == "udp")
                    return new List<Hashtable> { await Quic(target).ConfigureAwait(false) };
                return await Stream(target).ConfigureAwait(false);
            }
            finally
            {
                slots.Release();
            }
        }

        private async Task<List<Hashtable>> Stream(IDictionary target)
        {
            Stopwatch watch = Stopwatch.StartNew();
            List<Hashtable> rows = new List<Hashtable>();
            IList checks = (IList)target["checks"];
            int port = Convert.ToInt32(target["port"]);
            using (TcpClient client = new TcpClient(AddressFamilyOf((string)target["family"])))
            {
                Task connect = client.ConnectAsync(IPAddress.Parse((string)target["address"]), port);
                string failure = null;
                string kind = null;
                if (await Task.WhenAny(connect, Task.Delay(timeoutMs)).ConfigureAwait(false) != connect)
                {
                    kind = "timeout";
                    failure = String.Format("TCP {0}: no answer within {1}ms (dropped?)", port, timeoutMs);
                }
                else if (connect.IsFaulted)
                {
                    SocketException error = FindSocketError(connect.Exception);
                    kind = error == null ? "error" : SocketErrorKind(error, false);
                    failure = String.Format("TCP {0}: {1}", port, error == null ? connect.Exception.GetBaseException().Message : error.Message);
                }
                if (failure != null)
                {
                    foreach (string check in checks)
                        rows.Add(Row(target, check, false, kind, check == "tcp" ? failure : "no TCP connection: " + failure, watch));
                    return rows;
                }
                if (checks.Contains("tcp"))
                    rows.Add(Row(target, "tcp", true, null, "connected", watch));
                foreach (string check in checks)
                {
                    if (check == "tls" || check == "https")
                    {
                        Hashtable row = await Handshake(client, target, check, watch).ConfigureAwait(false);
                        // The tunnel's check also sends cloudflared's own (large) ClientHello on a second connection.
                        if (check == "tls" && (bool)row["ok"] && target.Contains("hello"))
                            row["hello"] = await CloudflaredHello(target, watch).ConfigureAwait(false);
                        rows.Add(row);
                    }
                }
            }
            return rows;
        }

        private async Task<Hashtable> Handshake(TcpClient client, IDictionary target, string check, Stopwatch watch)
        {
            string serverName = (string)target["server_name"];
            SslPolicyErrors policyErrors = SslPolicyErrors.None;
            RemoteCertificateValidationCallback validate = delegate(object sender, X509Certificate certificate, X509Chain chain, SslPolicyErrors errors)
            {
                policyErrors = errors;
                return !validateCerts || Trusted(certificate, errors, check == "tls");
            };
            Stopwatch handshakeWatch = Stopwatch.StartNew();
            using (SslStream tls = new SslStream(client.GetStream(), false, validate))
            {
                Task handshake = tls.AuthenticateAsClientAsync(serverName, null, Tls12And13, false);
                int remaining = Math.Max(50, timeoutMs - (int)watch.ElapsedMilliseconds);
                if (await Task.WhenAny(handshake, Task.Delay(remaining)).ConfigureAwait(false) != handshake)
                    return Row(target, check, false, "timeout", "TLS handshake: no answer (dropped?)", handshakeWatch);
                if (handshake.IsFaulted)
                {
                    Exception error = handshake.Exception.GetBaseException();
                    if (error is AuthenticationException && policyErrors != SslPolicyErrors.None)
                        return Row(target, check, false, "tls_certificate", String.Format("certificate not valid for {0}: {1}", serverName, policyErrors), handshakeWatch);
                    SocketException socketError = FindSocketError(handshake.Exception);
                    if (socketError != null)
                        return Row(target, check, false, SocketErrorKind(socketError, false), "TLS handshake: " + socketError.Message, handshakeWatch);
                    return Row(target, check, false, "tls", "TLS handshake failed: " + error.Message, handshakeWatch);
                }
                return Row(target, check, true, null, String.Format("{0} with SNI {1}", tls.SslProtocol, serverName), handshakeWatch);
            }
        }

        // cloudflared's trust on the tunnel port (tlsconfig/certreloader.go, CreateTunnelConfig): the system store
        // plus the three Cloudflare roots; with --cacert (ca_path) that file alone. The HTTPS checks on 443 trust
        // the system store, or ca_path instead of it.
        private bool Trusted(X509Certificate certificate, SslPolicyErrors errors, bool tunnel)
        {
            if (trustedRoots == null && errors == SslPolicyErrors.None)
                return true;
            X509Certificate2Collection anchors = trustedRoots != null ? trustedRoots : (tunnel ? tunnelRoots : null);
            // Only an unknown root can be made good by our anchors; a wrong name or a missing certificate cannot.
            if (anchors == null || anchors.Count == 0 || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
                return false;
            using (X509Chain chain = new X509Chain())
            {
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                chain.ChainPolicy.VerificationFlags = X509VerificationFlags.AllowUnknownCertificateAuthority;
                chain.ChainPolicy.ExtraStore.AddRange(anchors);
                if (!chain.Build(new X509Certificate2(certificate)))
                    return false;
                X509Certificate2 root = chain.ChainElements[chain.ChainElements.Count - 1].Certificate;
                foreach (X509Certificate2 trusted in anchors)
                {
                    if (trusted.Thumbprint == root.Thumbprint)
                        return true;
                }
                return false;
            }
        }

        // What a server answers to cloudflared's ClientHello (built by the controller: module_utils/tls_hello.py) on
        // a new connection: its first bytes (enough for the record and ServerHello headers), or why none came. The
        // controller reads them.
        private const int HelloAnswerBytes = 43;

        private async Task<Hashtable> CloudflaredHello(IDictionary target, Stopwatch watch)
        {
            Hashtable hello = new Hashtable();
            byte[] bytes = Convert.FromBase64String((string)target["hello"]);
            int port = Convert.ToInt32(target["port"]);
            hello["size"] = bytes.Length;
            using (TcpClient client = new TcpClient(AddressFamilyOf((string)target["family"])))
            {
                Task connect = client.ConnectAsync(IPAddress.Parse((string)target["address"]), port);
                int remaining = Math.Max(50, timeoutMs - (int)watch.ElapsedMilliseconds);
                if (await Task.WhenAny(connect, Task.Delay(remaining)).ConfigureAwait(false) != connect)
                {
                    hello["outcome"] = "error";
                    hello["error_kind"] = "timeout";
                    hello["message"] = "no answer to the TCP connect (dropped?)";
                    return hello;
                }
                if (connect.IsFaulted)
                {
                    SocketException error = FindSocketError(connect.Exception);
                    hello["outcome"] = "error";
                    hello["error_kind"] = error == null ? "error" : SocketErrorKind(error, false);
                    hello["message"] = error == null ? connect.Exception.GetBaseException().Message : error.Message;
                    return hello;
                }
                List<byte> received = new List<byte>();
                string outcome = "answered";
                try
                {
                    NetworkStream stream = client.GetStream();
                    await stream.WriteAsync(bytes, 0, bytes.Length).ConfigureAwait(false);
                    byte[] buffer = new byte[4096];
                    while (received.Count < HelloAnswerBytes)
                    {
                        Task<int> read = stream.ReadAsync(buffer, 0, buffer.Length);
                        remaining = Math.Max(1, timeoutMs - (int)watch.ElapsedMilliseconds);
                        if (await Task.WhenAny(read, Task.Delay(remaining)).ConfigureAwait(false) != read)
                        {
                            outcome = "silent";
                            break;
                        }
                        int count = read.Result;
                        if (count == 0)
                        {
                            outcome = "closed";
                            break;
                        }
                        for (int index = 0; index < count; index++)
                            received.Add(buffer[index]);
                        if (received[0] == 0x15 && received.Count >= 7)
                            break;
                    }
                }
                catch (Exception error)
                {
                    outcome = "closed";
                    hello["message"] = error.GetBaseException().Message;
                }
                hello["outcome"] = outcome;
                hello["answer"] = Convert.ToBase64String(received.ToArray());
            }
            return hello;
        }

        // A client or server datagram carrying an ack-eliciting Initial is at least 1200 bytes (RFC 9000, 14.1):
        // such an answer ends an attempt; a smaller one (a bare ACK, a CONNECTION_CLOSE) is kept and waited past.
        private const int FullAnswer = 1200;

        private class Attempt
        {
            public string Kind;
            public UdpClient Udp;
            public Task<UdpReceiveResult> Receive;
            public List<string> Answers = new List<string>();
            public bool Finished;
            public SocketException Error;
        }

        private static async Task<Attempt> Send(IDictionary attempt, string family, IPAddress address, int port)
        {
            Attempt sent = new Attempt();
            sent.Kind = (string)attempt["kind"];
            sent.Udp = new UdpClient(AddressFamilyOf(family));
            try
            {
                // A connected UDP socket turns an ICMP port unreachable into a SocketException.
                sent.Udp.Connect(address, port);
                foreach (object datagram in (IList)attempt["datagrams"])
                {
                    byte[] bytes = Convert.FromBase64String((string)datagram);
                    await sent.Udp.SendAsync(bytes, bytes.Length).ConfigureAwait(false);
                }
                sent.Receive = sent.Udp.ReceiveAsync();
            }
            catch (SocketException error)
            {
                sent.Error = error;
                sent.Finished = true;
            }
            return sent;
        }

        private static bool FirstFinished(List<Attempt> attempts, int first)
        {
            for (int index = 0; index < first; index++)
            {
                if (!attempts[index].Finished)
                    return false;
            }
            return true;
        }

        // cloudflared's flights (the first attempts: the tunnel's and the pre-check's) go out at once; the smaller
        // attempts only when the tunnel's is still unanswered after two thirds of the timeout. Every datagram that comes back is returned,
        // by attempt; the controller reads them (plugin_utils/windows_probe.py).
        private async Task<Hashtable> Quic(IDictionary target)
        {
            Stopwatch watch = Stopwatch.StartNew();
            int port = Convert.ToInt32(target["port"]);
            string family = (string)target["family"];
            IPAddress address = IPAddress.Parse((string)target["address"]);
            IList planned = (IList)target["attempts"];
            List<Attempt> attempts = new List<Attempt>();
            int firstCount = Math.Min(firstAttempts, planned.Count);
            for (int index = 0; index < firstCount; index++)
                attempts.Add(await Send((IDictionary)planned[index], family, address, port).ConfigureAwait(false));
            int checkAt = timeoutMs * 2 / 3;
            try
            {
                while (!FirstFinished(attempts, firstCount) && watch.ElapsedMilliseconds < timeoutMs)
                {
                    if (attempts.Count == firstCount && !attempts[0].Finished && watch.ElapsedMilliseconds >= checkAt)
                    {
                        for (int index = firstCount; index < planned.Count; index++)
                            attempts.Add(await Send((IDictionary)planned[index], family, address, port).ConfigureAwait(false));
                    }
                    List<Task> waiting = new List<Task>();
                    foreach (Attempt attempt in attempts)
                    {
                        if (!attempt.Finished)
                            waiting.Add(attempt.Receive);
                    }
                    if (waiting.Count == 0)
                        break;
                    int wake = attempts.Count == firstCount && !attempts[0].Finished ? checkAt : timeoutMs;
                    waiting.Add(Task.Delay(Math.Max(1, wake - (int)watch.ElapsedMilliseconds)));
                    await Task.WhenAny(waiting).ConfigureAwait(false);
                    foreach (Attempt attempt in attempts)
                    {
                        if (attempt.Finished || !attempt.Receive.IsCompleted)
                            continue;
                        if (attempt.Receive.IsFaulted)
                        {
                            attempt.Error = FindSocketError(attempt.Receive.Exception);
                            attempt.Finished = true;
                            continue;
                        }
                        byte[] buffer = attempt.Receive.Result.Buffer;
                        attempt.Answers.Add(Convert.ToBase64String(buffer));
                        if (buffer.Length >= FullAnswer)
                            attempt.Finished = true;
                        else
                            attempt.Receive = attempt.Udp.ReceiveAsync();
                    }
                }
                Attempt first = attempts[0];
                Hashtable row;
                if (first.Answers.Count == 0 && first.Error != null)
                    row = Row(target, "quic", false, SocketErrorKind(first.Error, true), String.Format("UDP {0}: {1}", port, first.Error.Message), watch);
                else if (first.Answers.Count == 0 && first.Finished)
                    row = Row(target, "quic", false, "error", String.Format("UDP {0}: the receive failed", port), watch);
                else if (first.Answers.Count == 0)
                    row = Row(target, "quic", false, "timeout", String.Format("UDP {0}: no QUIC answer within {1}ms (dropped?)", port, timeoutMs), watch);
                else
                    row = Row(target, "quic", true, null, "answered", watch);
                Hashtable answers = new Hashtable();
                foreach (Attempt attempt in attempts)
                    answers[attempt.Kind] = attempt.Answers;
                row["answers"] = answers;
                return row;
            }
            finally
            {
                foreach (Attempt attempt in attempts)
                    attempt.Udp.Close();
            }
        }
    }
}
