// A reference bridge that crashes, for ReferenceEngineCrashTests: the process kills itself with a real signal
// (as node does on a V8 fatal error) after reading its first batch, instead of answering.
//   WRIT_CRASH=always            crash in every process
//   WRIT_CRASH=once:<marker>     crash in the first process only (it creates <marker>); later processes are the real bridge
import fs from 'node:fs';
import { createInterface } from 'node:readline';

const mode = process.env.WRIT_CRASH ?? 'always';
const marker = mode.startsWith('once:') ? mode.slice('once:'.length) : null;
if (marker !== null && fs.existsSync(marker)) {
  await import(new URL('../../interop/cedar/diff.mjs', import.meta.url));
} else {
  if (marker !== null) fs.writeFileSync(marker, 'crashed\n');
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim() === '') continue;
    process.stderr.write('FATAL ERROR: simulated V8 crash for the retry test\n');
    process.kill(process.pid, 'SIGKILL');
  }
}
