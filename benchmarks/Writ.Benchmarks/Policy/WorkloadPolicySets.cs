using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Writ.Benchmarks.Policy;

/// <summary>
/// One generated benchmark input: Cedar policy text, entities in Cedar's entities JSON format and a request mix
/// (a JSON array of <c>{principal, action, resource, context}</c>), all as text so that every engine reads the same bytes.
/// </summary>
public sealed record WorkloadPolicySet(int PolicyCount, string PolicyText, string EntitiesJson, string RequestsJson, int RequestCount);

/// <summary>
/// Deterministic generator of workload-identity-shaped Cedar inputs: <c>Workload</c> principals carrying what attestation
/// found (uid, sha256, path, container id, node and its attestation method), actions <c>IssueX509Svid</c> and
/// <c>IssueJwtSvid</c>, <c>Identity</c> resources (SPIFFE ID, path, trust domain, owning team) and contexts with audience,
/// requested TTL and time; workloads on Kubernetes nodes also carry a <c>k8s</c> record. Policies: one permit per registered identity path (<c>resource == Identity::"…"</c>), and per
/// team a permit over <c>resource in Team::"…"</c>, a forbid on unknown binary hashes, an audience restriction
/// (<c>containsAny</c>) and TTL caps; some registrations carry <c>datetime</c> validity windows (a few already expired).
/// The same (count, seed) always gives byte-identical output.
/// </summary>
public static class WorkloadPolicySets
{
    public const ulong DefaultSeed = 0x5EED_CEDA_2026UL;

    /// <summary>Size of the request mix; constant so benchmarks can report per-decision figures.</summary>
    public const int RequestCount = 256;

    private const string TrustDomain = "prod.example.org";
    private const string Now = "2026-11-24T15:00:00Z";
    private const int PoliciesPerTeam = 4;

    /// <summary>Generates a set of exactly <paramref name="policyCount"/> policies (at least 5).</summary>
    public static WorkloadPolicySet Generate(int policyCount, ulong seed = DefaultSeed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(policyCount, PoliciesPerTeam + 1);
        var rng = new SplitMix64(seed ^ (ulong)policyCount);
        var teamCount = Math.Max(1, (policyCount + 19) / 20);
        var identityCount = policyCount - (PoliciesPerTeam * teamCount);
        if (identityCount < 1) teamCount = 1;
        identityCount = policyCount - (PoliciesPerTeam * teamCount);

        var teams = new List<Team>();
        for (var t = 0; t < teamCount; t++) teams.Add(new Team(t));
        var identities = new List<Identity>();
        for (var i = 0; i < identityCount; i++)
        {
            var team = teams[i % teamCount];
            var k = i / teamCount;
            var node = team.Nodes[k % team.Nodes.Length];
            var workload = new Workload(
                $"wl-{team.Index:D3}-{k:D3}", 10_000 + (team.Index * 100) + k, rng.Hex(64), $"/opt/team-{team.Index:D3}/bin/svc-{k:D3}",
                rng.Hex(12), node, team);
            // Every 4th registration has a validity window; every 10th of those windows has already closed.
            string? window = null;
            if (i % 4 == 3)
            {
                window = i % 40 == 3
                    ? """context.now >= datetime("2025-01-01T00:00:00Z") && context.now < datetime("2026-06-01T00:00:00Z")"""
                    : """context.now >= datetime("2026-01-01T00:00:00Z") && context.now < datetime("2027-01-01T00:00:00Z")""";
            }

            var identity = new Identity(team, k, workload, window);
            identities.Add(identity);
            team.Identities.Add(identity);
        }

        // One attacker per team: same path, uid and node as the team's first workload, but a binary nobody registered.
        foreach (var team in teams)
        {
            var victim = team.Identities[0].Workload;
            team.Rogue = new Workload($"wl-{team.Index:D3}-rogue", victim.Uid, rng.Hex(64), victim.Path, rng.Hex(12), victim.Node, team);
        }

        var policies = WritePolicies(teams, identities);
        var entities = WriteEntities(teams, identities);
        var requests = WriteRequests(teams, identities, rng);
        return new WorkloadPolicySet(policyCount, policies, entities, requests, RequestCount);
    }

    private static string WritePolicies(List<Team> teams, List<Identity> identities)
    {
        var sb = new StringBuilder();
        foreach (var team in teams)
        {
            var t = team.Name;
            var hashes = string.Join(", ", team.Identities.Select(i => $"\"{i.Workload.Sha256}\""));
            sb.Append(CultureInfo.InvariantCulture, $$"""
                // {{t}}: only binaries registered for the team may get any of its identities.
                forbid (principal, action, resource in Team::"{{t}}")
                unless { principal has sha256 && [{{hashes}}].contains(principal.sha256) };

                // {{t}}: JWT-SVIDs only for the team's own audiences, never a wildcard.
                forbid (principal, action == Action::"IssueJwtSvid", resource in Team::"{{t}}")
                unless { context.audience.containsAny(["https://api.{{t}}.example", "spiffe://{{TrustDomain}}/{{t}}/gateway"]) && !context.audience.contains("*") };

                // {{t}}: TTL caps (24h for X.509, 15m for JWT).
                forbid (principal, action in [Action::"IssueX509Svid", Action::"IssueJwtSvid"], resource in Team::"{{t}}")
                when { context.requested_ttl > duration("24h") || (action == Action::"IssueJwtSvid" && context.requested_ttl > duration("15m")) };

                // {{t}}: any Kubernetes workload of the team may get a JWT-SVID for any of the team's identities.
                // No `has k8s` guard, as in many real sets: for workloads not on Kubernetes this policy errors (skipped, reported).
                permit (principal is Workload in Team::"{{t}}", action == Action::"IssueJwtSvid", resource in Team::"{{t}}")
                when { principal.k8s.namespace == "{{t}}" && principal.node.attestation_method == "k8s_psat" && principal.path like "/opt/{{t}}/*" && resource.spiffe_id like "spiffe://{{TrustDomain}}/{{t}}/*" && resource.owner == Team::"{{t}}" };


                """);
        }

        foreach (var id in identities)
        {
            var w = id.Workload;
            sb.Append(CultureInfo.InvariantCulture, $$"""
                permit (principal is Workload, action in [Action::"IssueX509Svid", Action::"IssueJwtSvid"], resource == Identity::"{{id.SpiffeId}}")
                when { principal.path == "{{w.Path}}" && principal.uid == {{w.Uid}} && principal.node == Node::"{{w.Node.Name}}" && principal.node.attestation_method == "{{w.Node.Method}}"{{(id.Window is null ? "" : " && " + id.Window)}} };

                """);
        }

        return sb.ToString();
    }

    private static string WriteEntities(List<Team> teams, List<Identity> identities)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartArray();
            foreach (var team in teams)
            {
                json.WriteStartObject();
                Uid(json, "uid", "Team", team.Name);
                json.WriteStartObject("attrs");
                json.WriteString("name", team.Name);
                json.WriteEndObject();
                json.WriteStartArray("parents");
                json.WriteEndArray();
                json.WriteEndObject();
                foreach (var node in team.Nodes)
                {
                    json.WriteStartObject();
                    Uid(json, "uid", "Node", node.Name);
                    json.WriteStartObject("attrs");
                    json.WriteString("attestation_method", node.Method);
                    json.WriteString("hostname", node.Name + ".nodes." + TrustDomain);
                    json.WriteEndObject();
                    json.WriteStartArray("parents");
                    json.WriteEndArray();
                    json.WriteEndObject();
                }
            }

            foreach (var id in identities)
            {
                json.WriteStartObject();
                Uid(json, "uid", "Identity", id.SpiffeId);
                json.WriteStartObject("attrs");
                json.WriteString("spiffe_id", id.SpiffeId);
                json.WriteString("path", id.Path);
                json.WriteString("trust_domain", TrustDomain);
                json.WritePropertyName("owner");
                EntityRef(json, "Team", id.Team.Name);
                json.WriteEndObject();
                json.WriteStartArray("parents");
                UidValue(json, "Team", id.Team.Name);
                json.WriteEndArray();
                json.WriteEndObject();
            }

            foreach (var w in identities.Select(i => i.Workload).Concat(teams.Select(t => t.Rogue!)))
            {
                json.WriteStartObject();
                Uid(json, "uid", "Workload", w.Name);
                json.WriteStartObject("attrs");
                json.WriteNumber("uid", w.Uid);
                json.WriteString("sha256", w.Sha256);
                json.WriteString("path", w.Path);
                json.WriteString("container_id", w.ContainerId);
                json.WritePropertyName("node");
                EntityRef(json, "Node", w.Node.Name);
                if (w.Node.Method == "k8s_psat")
                {
                    json.WriteStartObject("k8s");
                    json.WriteString("namespace", w.Team.Name);
                    json.WriteString("service_account", w.Name);
                    json.WriteString("pod_uid", w.ContainerId + "-pod");
                    json.WriteEndObject();
                }

                json.WriteEndObject();
                json.WriteStartArray("parents");
                UidValue(json, "Team", w.Team.Name);
                json.WriteEndArray();
                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string WriteRequests(List<Team> teams, List<Identity> identities, SplitMix64 rng)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartArray();
            for (var r = 0; r < RequestCount; r++)
            {
                var id = identities[rng.Next(identities.Count)];
                var workload = id.Workload;
                var jwt = false;
                string[] audience = [];
                var ttl = "1h";
                switch (rng.Next(8))
                {
                    case 0 or 1 or 2: // the registered workload asks for its X.509-SVID
                        break;
                    case 3: // the registered workload asks for a JWT-SVID for its team's API
                        jwt = true;
                        audience = [$"https://api.{id.Team.Name}.example"];
                        ttl = "5m";
                        break;
                    case 4: // a JWT-SVID for someone else's audience
                        jwt = true;
                        audience = ["https://evil.example", "*"];
                        ttl = "5m";
                        break;
                    case 5: // an X.509-SVID for longer than the cap
                        ttl = "48h";
                        break;
                    case 6: // the team's rogue binary: every attested attribute matches except the hash
                        workload = id.Team.Rogue!;
                        break;
                    default: // another workload of the team asks for this identity (JWT: allowed on k8s nodes)
                        workload = id.Team.Identities[rng.Next(id.Team.Identities.Count)].Workload;
                        jwt = rng.Next(2) == 0;
                        if (jwt)
                        {
                            audience = [$"spiffe://{TrustDomain}/{id.Team.Name}/gateway"];
                            ttl = "10m";
                        }

                        break;
                }

                json.WriteStartObject();
                Uid(json, "principal", "Workload", workload.Name);
                Uid(json, "action", "Action", jwt ? "IssueJwtSvid" : "IssueX509Svid");
                Uid(json, "resource", "Identity", id.SpiffeId);
                json.WriteStartObject("context");
                json.WriteStartArray("audience");
                foreach (var a in audience) json.WriteStringValue(a);
                json.WriteEndArray();
                json.WritePropertyName("requested_ttl");
                Extension(json, "duration", ttl);
                json.WritePropertyName("now");
                Extension(json, "datetime", Now);
                json.WriteEndObject();
                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void Uid(Utf8JsonWriter json, string property, string type, string id)
    {
        json.WritePropertyName(property);
        UidValue(json, type, id);
    }

    private static void UidValue(Utf8JsonWriter json, string type, string id)
    {
        json.WriteStartObject();
        json.WriteString("type", type);
        json.WriteString("id", id);
        json.WriteEndObject();
    }

    private static void EntityRef(Utf8JsonWriter json, string type, string id)
    {
        json.WriteStartObject();
        json.WritePropertyName("__entity");
        UidValue(json, type, id);
        json.WriteEndObject();
    }

    private static void Extension(Utf8JsonWriter json, string fn, string arg)
    {
        json.WriteStartObject();
        json.WriteStartObject("__extn");
        json.WriteString("fn", fn);
        json.WriteString("arg", arg);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private sealed class Team
    {
        public Team(int index)
        {
            Index = index;
            Name = $"team-{index:D3}";
            Nodes = [new Node($"node-{index:D3}-0", "tpm"), new Node($"node-{index:D3}-1", "k8s_psat"), new Node($"node-{index:D3}-2", "x509pop")];
        }

        public int Index { get; }
        public string Name { get; }
        public Node[] Nodes { get; }
        public List<Identity> Identities { get; } = [];
        public Workload? Rogue { get; set; }
    }

    private sealed record Node(string Name, string Method);

    private sealed record Workload(string Name, long Uid, string Sha256, string Path, string ContainerId, Node Node, Team Team);

    private sealed class Identity(Team team, int k, Workload workload, string? window)
    {
        public Team Team { get; } = team;
        public Workload Workload { get; } = workload;
        public string? Window { get; } = window;
        public string Path { get; } = $"/{team.Name}/svc-{k:D3}";
        public string SpiffeId => "spiffe://" + TrustDomain + Path;
    }

    /// <summary>SplitMix64: tiny, fast and the same on every platform and runtime version.</summary>
    private sealed class SplitMix64(ulong state)
    {
        private ulong _state = state;

        public ulong NextUInt64()
        {
            var z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        public int Next(int maxExclusive) => (int)(NextUInt64() % (ulong)maxExclusive);

        public string Hex(int length)
        {
            var sb = new StringBuilder(length);
            while (sb.Length < length) sb.Append(NextUInt64().ToString("x16", CultureInfo.InvariantCulture));
            return sb.ToString(0, length);
        }
    }
}
