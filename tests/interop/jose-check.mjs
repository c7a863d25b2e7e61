// JWT-SVID interop with `jose` (a JOSE library nobody on this project wrote).
// Reads one JSON request on stdin, prints one JSON result on stdout.
//   {"op":"verify","token":..., "jwks":{...}, "audience":"...", "now": <unix seconds>}
//   {"op":"sign","alg":"ES256|ES384|RS256|PS256|...","kid":"...","claims":{...}}  -> {"token":..., "jwk":{public JWK with kid}}
import { jwtVerify, createLocalJWKSet, SignJWT, generateKeyPair, exportJWK } from 'jose';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString('utf8'));

try {
  if (req.op === 'verify') {
    const { payload, protectedHeader } = await jwtVerify(req.token, createLocalJWKSet(req.jwks), {
      audience: req.audience,
      currentDate: new Date(req.now * 1000),
      algorithms: ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'],
      requiredClaims: ['sub', 'aud', 'exp'],
    });
    console.log(JSON.stringify({ ok: true, payload, header: protectedHeader }));
  } else if (req.op === 'sign') {
    const { publicKey, privateKey } = await generateKeyPair(req.alg, { extractable: true, modulusLength: 2048 });
    const token = await new SignJWT(req.claims)
      .setProtectedHeader({ alg: req.alg, kid: req.kid, typ: 'JWT' })
      .sign(privateKey);
    const jwk = await exportJWK(publicKey);
    jwk.kid = req.kid;
    console.log(JSON.stringify({ ok: true, token, jwk }));
  } else {
    throw new Error('unknown op ' + req.op);
  }
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: `${e.code ?? e.name}: ${e.message}` }));
}
