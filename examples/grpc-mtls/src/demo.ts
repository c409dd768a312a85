// One command, no SPIRE: starts the local development Workload API, then the greeter server and two client
// workloads as separate processes, each with its own SPIFFE_ENDPOINT_SOCKET (mTLS + JWT-SVID call
// credentials). Reports who got in.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

function run(
  script: string,
  env: Record<string, string>,
  untilLine = false,
): Promise<{ line: string; kill: () => void }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, here(script)], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (untilLine && out.includes('\n'))
        resolve({ line: out.split('\n')[0] as string, kill: () => child.kill('SIGTERM') });
    });
    child.on('exit', (code) => {
      if (!untilLine)
        code === 0
          ? resolve({ line: out.trim(), kill: () => undefined })
          : reject(new Error(`${script} exited ${code}`));
      else reject(new Error(`${script} exited ${code} before it was ready`));
    });
  });
}

export async function demo(log: (s: string) => void = console.log): Promise<boolean> {
  const dev = await DevWorkloadApiServer.start({
    trustDomain: 'example.org',
    workloads: {
      greeter: 'spiffe://example.org/service/greeter',
      'payment-processor': 'spiffe://example.org/service/payment-processor',
      inventory: 'spiffe://example.org/service/inventory',
    },
    svidTtlSeconds: 300,
  });
  log(`dev Workload API for trust domain ${dev.trustDomain} (sockets in ${dev.socketDir})`);
  let server: { line: string; kill: () => void } | undefined;
  try {
    server = await run('./server.ts', { SPIFFE_ENDPOINT_SOCKET: dev.address('greeter'), PORT: '0' }, true);
    const { listening, spiffeId } = JSON.parse(server.line) as { listening: string; spiffeId: string };
    log(`greeter listening on ${listening} as ${spiffeId}`);

    let ok = true;
    for (const [workload, expected] of [
      ['payment-processor', 'OK'],
      ['inventory', 'PERMISSION_DENIED'],
    ] as const) {
      const { line } = await run('./client.ts', { SPIFFE_ENDPOINT_SOCKET: dev.address(workload), TARGET: listening });
      const r = JSON.parse(line) as { me: string; code: string; message: string };
      const verdict = r.code === 'OK' ? 'ALLOWED ' : 'REJECTED';
      log(`${verdict} ${r.me} -> helloworld.Greeter/SayHello: ${r.code} ${r.message}`);
      if (r.code !== expected) ok = false;
    }
    log(ok ? 'demo OK: only the payment processor was allowed' : 'demo FAILED: unexpected outcome');
    return ok;
  } finally {
    server?.kill();
    await dev.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  demo().then(
    (ok) => process.exit(ok ? 0 : 1),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
