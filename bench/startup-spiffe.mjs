// Start-up benchmark, SPIFFE side: process start to the first verified request. Plain JavaScript run by node
// itself (no tsx), importing the built package as an application would.
// Usage: node startup-spiffe.mjs <workload API address> <port>
import { createSpiffeTlsSocket, X509Source } from '@spiffe-ts/core';

const [address, port] = process.argv.slice(2);
const source = await X509Source.create({ address });
const socket = createSpiffeTlsSocket({
  source,
  authorize: ['spiffe://example.org/bench-go'],
  host: '127.0.0.1',
  port: Number(port),
});
socket.on('data', (d) => {
  if (d.toString() === 'ok') process.stdout.write('ok\n');
});
socket.on('error', (err) => {
  process.stdout.write(`error ${err.message}\n`);
});
