namespace Writ.Policy.Tests.Differential;

/// <summary>
/// Greedy delta minimisation of a failing case: drops requests, policies (with their links), links and entities,
/// and empties the context, one at a time, keeping each removal while <c>stillFails</c> holds; repeats until nothing
/// more can go.
/// </summary>
internal static class Shrinker
{
    public static GenCase Shrink(GenCase c, Func<GenCase, bool> stillFails, int maxRounds = 8)
    {
        // One failing request is enough.
        for (var i = 0; i < c.Requests.Count && c.Requests.Count > 1; i++)
        {
            var one = c with { Requests = [c.Requests[i]] };
            if (stillFails(one))
            {
                c = one;
                break;
            }
        }

        for (var round = 0; round < maxRounds; round++)
        {
            var changed = false;
            for (var i = c.Policies.Count - 1; i >= 0; i--)
            {
                var id = c.Policies[i].Id;
                var candidate = c with
                {
                    Policies = c.Policies.Where((_, k) => k != i).ToList(),
                    Links = c.Links.Where(l => l.TemplateId != id).ToList(),
                };
                if (stillFails(candidate))
                {
                    c = candidate;
                    changed = true;
                }
            }

            for (var i = c.Links.Count - 1; i >= 0; i--)
            {
                var candidate = c with { Links = c.Links.Where((_, k) => k != i).ToList() };
                if (stillFails(candidate))
                {
                    c = candidate;
                    changed = true;
                }
            }

            for (var i = c.Entities.Count - 1; i >= 0; i--)
            {
                var candidate = c with { Entities = c.Entities.Where((_, k) => k != i).ToList() };
                if (stillFails(candidate))
                {
                    c = candidate;
                    changed = true;
                }
            }

            for (var i = c.Requests.Count - 1; i >= 0 && c.Requests.Count > 0; i--)
            {
                if (c.Requests[i].ContextJson == "{}") continue;
                var requests = c.Requests.ToList();
                requests[i] = requests[i] with { ContextJson = "{}" };
                var candidate = c with { Requests = requests };
                if (stillFails(candidate))
                {
                    c = candidate;
                    changed = true;
                }
            }

            if (!changed) break;
        }

        return c;
    }
}
