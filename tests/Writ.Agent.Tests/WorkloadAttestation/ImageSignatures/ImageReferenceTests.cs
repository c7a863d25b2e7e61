using Writ.Agent.WorkloadAttestation.ImageSignatures;

namespace Writ.Agent.Tests.WorkloadAttestation.ImageSignatures;

/// <summary>Image references normalized the way container runtimes do, and what cosign's docker-reference is compared with.</summary>
public sealed class ImageReferenceTests
{
    [Theory]
    [InlineData("nginx", "docker.io", "library/nginx", "registry-1.docker.io")]
    [InlineData("nginx:1.25", "docker.io", "library/nginx", "registry-1.docker.io")]
    [InlineData("docker.io/library/nginx:1.25", "docker.io", "library/nginx", "registry-1.docker.io")]
    [InlineData("index.docker.io/library/nginx", "docker.io", "library/nginx", "registry-1.docker.io")]
    [InlineData("bitnami/redis@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "docker.io", "bitnami/redis", "registry-1.docker.io")]
    [InlineData("ghcr.io/org/team/app:v1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ghcr.io", "org/team/app", "ghcr.io")]
    [InlineData("registry.example:5000/team/app", "registry.example:5000", "team/app", "registry.example:5000")]
    [InlineData("localhost/app:1", "localhost", "app", "localhost")]
    [InlineData("Registry.Example/a_b/c--d.e:tag", "registry.example", "a_b/c--d.e", "registry.example")]
    public void Parses_and_normalizes(string text, string registry, string repository, string apiHost)
    {
        Assert.True(ImageReference.TryParse(text, out var reference, out var error), error);
        Assert.Equal(registry, reference.Registry);
        Assert.Equal(repository, reference.Repository);
        Assert.Equal(apiHost, reference.ApiHost);
    }

    [Theory]
    [InlineData("")]
    [InlineData("team/../app")]
    [InlineData("registry.example/Team/app")]
    [InlineData("registry.example/team//app")]
    [InlineData("registry.example/team/app/")]
    [InlineData("reg istry.example/app")]
    [InlineData("registry.example/app%2f..")]
    [InlineData("[::1]:5000/app")]
    [InlineData("registry.example:99999/app")]
    [InlineData("registry.example:0/app")]
    public void Refuses_what_cannot_name_a_repository(string text)
    {
        Assert.False(ImageReference.TryParse(text, out _, out var error));
        Assert.False(string.IsNullOrEmpty(error));
    }

    [Fact]
    public void Cosign_docker_hub_references_equal_the_pod_image_names()
    {
        Assert.True(ImageReference.TryParse("index.docker.io/library/nginx", out var signed, out _));
        Assert.True(ImageReference.TryParse("nginx:1.25", out var pod, out _));
        Assert.Equal(pod, signed);
    }
}
