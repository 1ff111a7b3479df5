// Writes OpenPGP.js messages, signatures and keys into a directory for
// tests/payload_openpgpjs.rs: node payload_openpgpjs.mjs OUT_DIR COUNT, with
// OPENPGPJS_DIR the node_modules directory that holds `openpgp`.
import { createRequire } from 'module';
const require = createRequire(process.env.OPENPGPJS_DIR + '/');
const openpgp = require('openpgp');
import { writeFileSync } from 'fs';
const [,, outDir, countArg] = process.argv;
const count = parseInt(countArg, 10);
let seed = 12345;
const rnd = (n) => { const b = new Uint8Array(n); for (let i = 0; i < n; i++) { seed = (seed * 1103515245 + 12345) >>> 0; b[i] = seed >>> 24; } return b; };
const keys = [];
for (const [v6, type] of [[false, 'ecc'], [true, 'curve25519'], [false, 'rsa'], [true, 'curve448']]) {
  // aeadProtect at generation sets the SEIPDv2 feature flag (v6 keys),
  // so messages to them use SEIPD v2 and PKESK v6.
  const cfg = { v6Keys: v6, aeadProtect: v6 };
  const opts = { userIDs: [{ email: `k${keys.length}@example.org` }], format: 'object', config: cfg };
  if (type === 'rsa') { opts.type = 'rsa'; opts.rsaBits = 2048; } else if (type === 'curve25519' || type === 'curve448') { opts.type = type; } else { opts.type = 'ecc'; opts.curve = 'curve25519Legacy'; }
  const { privateKey, publicKey } = await openpgp.generateKey(opts);
  keys.push({ privateKey, publicKey, v6 });
}
const manifest = [];
for (let i = 0; i < count; i++) {
  const size = [0, 1, 100, 3000, 70000][i % 5] + (i % 11);
  const data = (i % 2 === 0) ? rnd(size) : new TextEncoder().encode('attack at dawn '.repeat(size / 15 + 1).slice(0, size));
  const message = await openpgp.createMessage({ binary: data });
  const config = {
    preferredCompressionAlgorithm: [openpgp.enums.compression.uncompressed, openpgp.enums.compression.zip, openpgp.enums.compression.zlib][i % 3],
    aeadProtect: i % 4 === 1,
  };
  const format = i % 2 === 0 ? 'armored' : 'binary';
  let encryptionKeys = [], passwords = [];
  if (i % 9 === 4) { passwords = ['secret']; }
  else { encryptionKeys = [keys[i % 4].publicKey]; if (i % 5 === 2) encryptionKeys.push(keys[(i + 1) % 4].publicKey); }
  const opts = { message, format, config };
  if (encryptionKeys.length) opts.encryptionKeys = encryptionKeys;
  if (passwords.length) opts.passwords = passwords;
  if (i % 7 === 3) opts.signingKeys = keys[0].privateKey;
  if (i % 6 === 5 && encryptionKeys.length) opts.wildcard = true;
  const out = await openpgp.encrypt(opts);
  const name = `m${i}.${format === 'armored' ? 'asc' : 'bin'}`;
  writeFileSync(`${outDir}/${name}`, out);
  manifest.push(`${name} ${encryptionKeys.length} ${opts.wildcard ? 1 : 0}`);
}
// Signed, detached, cleartext, keys.
const msg = await openpgp.createMessage({ text: 'hello' });
writeFileSync(`${outDir}/signed.asc`, await openpgp.sign({ message: msg, signingKeys: keys[1].privateKey }));
writeFileSync(`${outDir}/detached.asc`, await openpgp.sign({ message: msg, signingKeys: keys[0].privateKey, detached: true }));
const ct = await openpgp.createCleartextMessage({ text: 'hello\n- dash' });
writeFileSync(`${outDir}/cleartext.asc`, await openpgp.sign({ message: ct, signingKeys: keys[1].privateKey }));
writeFileSync(`${outDir}/key4.asc`, keys[0].publicKey.armor());
writeFileSync(`${outDir}/key6.asc`, keys[1].publicKey.armor());
writeFileSync(`${outDir}/manifest.txt`, manifest.join('\n') + '\n');
