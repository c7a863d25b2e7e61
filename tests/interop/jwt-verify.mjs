// Verifies a JWT-SVID with npm `jose` against the `jwt-svid` keys of a SPIFFE bundle — the way a relying party
// that never heard of Writ would. Usage: node jwt-verify.mjs BUNDLE_JSON_FILE TOKEN AUDIENCE
// Prints the subject and exits 0 when valid; prints the reason and exits 1 otherwise.
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, jwtVerify } from 'jose';

const [bundleFile, token, audience] = process.argv.slice(2);
const bundle = JSON.parse(readFileSync(bundleFile, 'utf8'));
// A SPIFFE bundle marks JWT authorities with use "jwt-svid"; a generic JOSE library only accepts "sig" (or none),
// so a relying party keeps the jwt-svid keys and drops the SPIFFE-specific use — nothing else is changed.
const jwks = createLocalJWKSet({
  keys: bundle.keys.filter((k) => k.use === 'jwt-svid').map(({ use, ...jwk }) => jwk),
});
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    audience,
    algorithms: ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
  });
  if (!String(payload.sub).startsWith('spiffe://')) throw new Error('sub is not a SPIFFE ID');
  console.log(`valid sub=${payload.sub} kid=${protectedHeader.kid} alg=${protectedHeader.alg}`);
} catch (e) {
  console.log(`invalid: ${e.code ?? ''} ${e.message}`);
  process.exit(1);
}
