// Start-up benchmark, baseline: process start to the first verified request with plain tls.connect from PEM
// files. Usage: node startup-plain.mjs <material dir> <port>
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tls from 'node:tls';

const [dir, port] = process.argv.slice(2);
const read = (f) => readFileSync(join(dir, f), 'utf8');
const socket = tls.connect({
  host: '127.0.0.1',
  port: Number(port),
  cert: read('client.pem'),
  key: read('client.key'),
  ca: read('bundle.pem'),
  minVersion: 'TLSv1.3',
  checkServerIdentity: () => undefined, // plain mTLS: the chain is checked by OpenSSL, no identity check
});
socket.on('data', (d) => {
  if (d.toString() === 'ok') process.stdout.write('ok\n');
});
socket.on('error', (err) => {
  process.stdout.write(`error ${err.message}\n`);
});
