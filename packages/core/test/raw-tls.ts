import * as tls from 'node:tls';

/**
 * Connects to 127.0.0.1:`port` presenting `certificates` (PEM, leaf first) with `privateKey`, with no checks
 * on our side (the server under test decides), and resolves with everything the server sent before closing.
 */
export function presentChain(port: number, certificates: string, privateKey: string): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      cert: certificates,
      key: privateKey,
      rejectUnauthorized: false,
    });
    socket.on('data', (d: Buffer) => {
      data += d.toString();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(data));
  });
}
