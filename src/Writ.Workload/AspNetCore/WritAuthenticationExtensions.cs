using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Writ.Spiffe.Bundles;
using Writ.Spiffe.Jwt;

namespace Writ.Workload.AspNetCore;

/// <summary>Registers Writ's authentication schemes.</summary>
public static class WritAuthenticationExtensions
{
    /// <summary>
    /// The X.509-SVID scheme (<see cref="WritAuthenticationDefaults.X509SvidScheme"/>): callers authenticated by the client
    /// certificate of their TLS connection. Kestrel must ask for client certificates (e.g. the SDK's
    /// <c>UseWritServerCertificate</c>, or <c>ClientCertificateMode.RequireCertificate</c> with <c>AllowAnyClientCertificate()</c>:
    /// the scheme validates the certificate against the trust bundles itself).
    /// </summary>
    public static AuthenticationBuilder AddWritX509Svid(this AuthenticationBuilder builder, Action<WritX509SvidOptions> configure) =>
        builder.AddWritX509Svid(WritAuthenticationDefaults.X509SvidScheme, configure);

    /// <summary>The X.509-SVID scheme under the name <paramref name="scheme"/>.</summary>
    public static AuthenticationBuilder AddWritX509Svid(this AuthenticationBuilder builder, string scheme, Action<WritX509SvidOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<WritX509SvidOptions>, FromServices>());
        return builder.AddScheme<WritX509SvidOptions, WritX509SvidHandler>(scheme, "Writ X.509-SVID", configure);
    }

    /// <summary>The JWT-SVID scheme (<see cref="WritAuthenticationDefaults.JwtSvidScheme"/>): callers authenticated by an <c>Authorization: Bearer</c> JWT-SVID.</summary>
    public static AuthenticationBuilder AddWritJwtSvid(this AuthenticationBuilder builder, Action<WritJwtSvidOptions> configure) =>
        builder.AddWritJwtSvid(WritAuthenticationDefaults.JwtSvidScheme, configure);

    /// <summary>The JWT-SVID scheme under the name <paramref name="scheme"/>.</summary>
    public static AuthenticationBuilder AddWritJwtSvid(this AuthenticationBuilder builder, string scheme, Action<WritJwtSvidOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<WritJwtSvidOptions>, FromServices>());
        return builder.AddScheme<WritJwtSvidOptions, WritJwtSvidHandler>(scheme, "Writ JWT-SVID", configure);
    }

    /// <summary>Fills the sources a scheme was not given from DI, and gives each JWT scheme its own replay cache.</summary>
    private sealed class FromServices(IServiceProvider services) : IPostConfigureOptions<WritX509SvidOptions>, IPostConfigureOptions<WritJwtSvidOptions>
    {
        public void PostConfigure(string? name, WritX509SvidOptions options)
        {
            options.Bundles ??= Bundles();
            options.Revocations ??= services.GetService<IRevocationSource>();
        }

        public void PostConfigure(string? name, WritJwtSvidOptions options)
        {
            options.Bundles ??= Bundles();
            options.Revocations ??= services.GetService<IRevocationSource>();
            options.ReplayCache ??= new JwtReplayCache();
        }

        private IBundleSource? Bundles() => services.GetService<IWatchedBundleSource>() ?? services.GetService<IBundleSource>();
    }
}
