// Verifies a JWT-SVID the way an OIDC relying party that never heard of Writ does, with npm `jose`: fetch the issuer's
// /.well-known/openid-configuration, then its jwks_uri with createRemoteJWKSet, then jwtVerify (issuer, audience).
// Usage: NODE_EXTRA_CA_CERTS=ca.pem node oidc-verify.mjs ISSUER TOKEN AUDIENCE
// Prints "valid sub=… kid=…" and exits 0 when valid; prints the reason and exits 1 otherwise.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [issuer, token, audience] = process.argv.slice(2);
try {
  const res = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error(`openid-configuration: HTTP ${res.status}`);
  const config = await res.json();
  if (config.issuer !== issuer) throw new Error(`the configuration names issuer ${config.issuer}`);
  const jwks = createRemoteJWKSet(new URL(config.jwks_uri));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer, audience, algorithms: config.id_token_signing_alg_values_supported });
  console.log(`valid sub=${payload.sub} kid=${protectedHeader.kid} alg=${protectedHeader.alg}`);
} catch (e) {
  console.log(`invalid: ${e.code ?? ''} ${e.message}`);
  process.exit(1);
}
