namespace Writ.ArchitectureTests;

/// <summary>Only the API layer's interceptors create RpcExceptions (see <see cref="RpcExceptionRule"/>).</summary>
public sealed class RpcExceptionRuleTests
{
    [Fact]
    public void Only_api_interceptors_create_rpc_exceptions()
    {
        var violations = RpcExceptionRule.Violations(Repo.Uses, RpcExceptionRule.AllowedDuringTransition).Select(u => u.Where).Distinct();
        Assert.Empty(violations);
    }

    [Fact]
    public void The_scan_sees_the_interceptors_and_every_source_line()
    {
        // Proves the scan reads the real assemblies with their PDBs: the server's interceptor creates RpcExceptions.
        var creations = Repo.Uses.Where(RpcExceptionRule.IsCreation).ToList();
        Assert.Contains(creations, u => u.File is not null && RpcExceptionRule.IsInterceptor(u.File));
        Assert.DoesNotContain(creations, u => u.File is null);
    }

    [Fact]
    public void Every_transition_allowance_is_still_needed()
    {
        var creating = Repo.Uses.Where(RpcExceptionRule.IsCreation).Select(u => u.File).ToHashSet(StringComparer.Ordinal);
        var stale = RpcExceptionRule.AllowedDuringTransition.Where(f => !creating.Contains(f))
            .Select(f => $"{f} no longer creates an RpcException: remove it from RpcExceptionRule.AllowedDuringTransition");
        Assert.Empty(stale);
    }

    [Fact]
    public void A_creation_outside_an_interceptor_is_caught_through_an_alias_or_target_typed_new()
    {
        using var snippet = new Snippet("Writ.Server", ("src/Writ.Server/Api/AgentApi.Sneaky.cs", """
            using Boom = Grpc.Core.RpcException;
            using Grpc.Core;
            namespace Writ.Server.Api;
            public static class Sneaky
            {
                public static void Aliased() => throw new Boom(new Status(StatusCode.PermissionDenied, "no"));
                public static RpcException TargetTyped() => new(new Status(StatusCode.Internal, "no"));
                public static System.Func<Status, RpcException> Lambda() => s => new Boom(s);
            }
            """));
        var violations = RpcExceptionRule.Violations(snippet.Uses(), []).ToList();
        Assert.Equal(3, violations.Count);
        Assert.All(violations, v => Assert.Equal("src/Writ.Server/Api/AgentApi.Sneaky.cs", v.File));
        Assert.Equal([6, 7, 8], violations.Select(v => v.Line).Order());
    }

    [Fact]
    public void A_subclass_of_rpc_exception_is_caught()
    {
        using var snippet = new Snippet("Writ.Agent", ("src/Writ.Agent/Cache/Refusal.cs", """
            namespace Writ.Agent.Cache;
            public sealed class Refusal() : Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.PermissionDenied, "no"));
            """));
        Assert.NotEmpty(RpcExceptionRule.Violations(snippet.Uses(), []));
    }

    [Fact]
    public void An_interceptor_file_outside_the_api_layer_is_caught()
    {
        using var snippet = new Snippet("Writ.Server", ("src/Writ.Server/Storage/StoreInterceptor.cs", """
            namespace Writ.Server.Storage;
            public static class StoreInterceptor
            {
                public static Grpc.Core.RpcException Make() => new(Grpc.Core.Status.DefaultCancelled);
            }
            """));
        Assert.Single(RpcExceptionRule.Violations(snippet.Uses(), []));
    }

    [Fact]
    public void Interceptors_in_the_api_layer_comments_and_strings_pass()
    {
        using var snippet = new Snippet("Writ.Server",
            ("src/Writ.Server/Api/ErrorTranslationInterceptor.cs", """
                namespace Writ.Server.Api;
                public static class ErrorTranslationInterceptor
                {
                    public static Grpc.Core.RpcException Make() => new(Grpc.Core.Status.DefaultCancelled);
                }
                """),
            ("src/Writ.Agent/WorkloadApi/WorkloadApiInterceptor.cs", """
                namespace Writ.Agent.WorkloadApi;
                public static class WorkloadApiInterceptor
                {
                    public static Grpc.Core.RpcException Make() => new(Grpc.Core.Status.DefaultSuccess);
                }
                """),
            ("src/Writ.Server/Api/AgentApi.Talk.cs", """
                namespace Writ.Server.Api;
                public static class Talk
                {
                    // throw new Grpc.Core.RpcException(Grpc.Core.Status.DefaultCancelled); -- a comment is no creation
                    public static string Text() => "throw new RpcException(new Status(StatusCode.Internal, \"x\"))";
                    public static bool Is(System.Exception e) => e is Grpc.Core.RpcException;
                }
                """));
        Assert.Empty(RpcExceptionRule.Violations(snippet.Uses(), []));
        Assert.Equal(2, snippet.Uses().Count(RpcExceptionRule.IsCreation));
    }
}
