// The Workload API client's gRPC transport against a raw node:http2 server on a real unix socket, for the
// protocol cases a well-behaved server rarely produces: trailers-only errors, framing split or joined across
// DATA frames, compression it did not negotiate, oversized messages, non-gRPC answers, connections lost.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jsonToStruct, WorkloadApiClient, WorkloadApiError, workloadApiServiceDefinition } from '@spiffe-ts/core';

type Handler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;

const def = workloadApiServiceDefinition();
const jwtBundles = (tds: string[]): Buffer =>
  def.FetchJWTBundles?.responseSerialize({
    bundles: Object.fromEntries(tds.map((td) => [td, Buffer.from('{"keys":[]}')])),
  }) as Buffer;
const grpcFrame = (msg: Buffer, flag = 0): Buffer => {
  const out = Buffer.alloc(5 + msg.length);
  out[0] = flag;
  out.writeUInt32BE(msg.length, 1);
  msg.copy(out, 5);
  return out;
};
const OK_HEADERS = { ':status': 200, 'content-type': 'application/grpc' };

describe('gRPC transport edge cases (raw HTTP/2 server)', () => {
  let dir: string;
  let server: http2.Http2Server;
  let handler: Handler;
  let address: string;
  let lastHeaders: http2.IncomingHttpHeaders | undefined;
  let sessions = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spiffe-transport-'));
    server = http2.createServer();
    server.on('session', () => sessions++);
    server.on('stream', (stream, headers) => {
      lastHeaders = headers;
      stream.on('error', () => {});
      handler(stream, headers);
    });
    const path = join(dir, 'api.sock');
    await new Promise<void>((r) => server.listen(path, r));
    address = `unix://${path}`;
  });
  after(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const client = (extra: ConstructorParameters<typeof WorkloadApiClient>[0] = {}) =>
    new WorkloadApiClient({ address, timeoutMs: 2000, backoff: { initialMs: 20, maxMs: 50 }, ...extra });

  /** A one-shot fetch against the current handler fails with this gRPC status, as a typed error. */
  const fetchFails = async (
    grpcCode: number,
    message?: RegExp,
    extra: ConstructorParameters<typeof WorkloadApiClient>[0] = {},
  ): Promise<WorkloadApiError> => {
    const c = client(extra);
    try {
      const err = await c.fetchJwtBundles().then(
        () => assert.fail('the fetch succeeded'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof WorkloadApiError, String(err));
      assert.equal(err.grpcCode, grpcCode);
      if (message) assert.match(err.message, message);
      return err;
    } finally {
      await c.close();
    }
  };

  test('sends a well-formed gRPC request with the Workload API header and the deadline', async () => {
    handler = (stream) => {
      stream.respond(OK_HEADERS, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(grpcFrame(jwtBundles(['example.org'])));
    };
    const c = client();
    try {
      const set = await c.fetchJwtBundles();
      assert.deepEqual(set.trustDomains().map(String), ['example.org']);
    } finally {
      await c.close();
    }
    assert.equal(lastHeaders?.[':method'], 'POST');
    assert.equal(lastHeaders?.[':path'], '/SpiffeWorkloadAPI/FetchJWTBundles');
    assert.equal(lastHeaders?.['content-type'], 'application/grpc');
    assert.equal(lastHeaders?.te, 'trailers');
    assert.equal(lastHeaders?.['workload.spiffe.io'], 'true');
    assert.match(String(lastHeaders?.['grpc-timeout']), /^\d+m$/);
    assert.ok(Number.parseInt(String(lastHeaders?.['grpc-timeout']), 10) <= 2000);
  });

  test('a trailers-only error status reaches the caller as a typed error with the decoded message', async () => {
    handler = (stream) =>
      stream.respond(
        { ...OK_HEADERS, 'grpc-status': '7', 'grpc-message': 'no%20identity%20issued' },
        { endStream: true },
      );
    const err = await fetchFails(7, /no identity issued/);
    assert.equal(err.code, 'WORKLOADAPI_PERMISSION_DENIED');
  });

  test('messages split into 1-byte DATA frames and several messages in one frame are all delivered', async () => {
    handler = (stream) => {
      stream.respond(OK_HEADERS);
      const first = grpcFrame(jwtBundles(['one.test']));
      // one byte at a time, then two messages in one write
      let i = 0;
      const drip = () => {
        if (i < first.length) {
          stream.write(first.subarray(i, i + 1));
          i++;
          setImmediate(drip);
        } else {
          stream.write(Buffer.concat([grpcFrame(jwtBundles(['two.test'])), grpcFrame(jwtBundles(['three.test']))]));
        }
      };
      drip();
    };
    const c = client();
    const seen: string[] = [];
    const got = new Promise<void>((resolve) => {
      c.watchJwtBundles({
        onUpdate: (set) => {
          seen.push(set.trustDomains().map(String).join());
          if (seen.length === 3) resolve();
        },
      });
    });
    try {
      await got;
      assert.deepEqual(seen, ['one.test', 'two.test', 'three.test']);
    } finally {
      await c.close();
    }
  });

  test('a compressed message (never negotiated) is refused with a typed error, not decoded', async () => {
    handler = (stream) => {
      stream.respond(OK_HEADERS);
      stream.end(grpcFrame(jwtBundles(['example.org']), 1));
    };
    await fetchFails(13, /compress/);
  });

  test('a message over the size limit is refused from its length prefix (RESOURCE_EXHAUSTED)', async () => {
    handler = (stream) => {
      stream.respond(OK_HEADERS);
      const header = Buffer.alloc(5);
      header.writeUInt32BE(64 * 1024 * 1024, 1); // announces 64 MiB, sends nothing more
      stream.write(header);
    };
    await fetchFails(8, /larger than the limit/, { maxMessageBytes: 1024 * 1024 });
  });

  test('a non-gRPC answer (HTTP 404, HTML) is a typed error', async () => {
    handler = (stream) => {
      stream.respond({ ':status': 404, 'content-type': 'text/html' });
      stream.end('<h1>not found</h1>');
    };
    await fetchFails(12, /HTTP status 404/);
  });

  test('a status OK that ends inside a message is an error, not a truncated answer', async () => {
    handler = (stream) => {
      stream.respond(OK_HEADERS, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(grpcFrame(jwtBundles(['example.org'])).subarray(0, 12));
    };
    const c = client();
    try {
      await assert.rejects(
        c.fetchJwtBundles(),
        (err: unknown) => err instanceof WorkloadApiError && err.grpcCode === 13,
      );
    } finally {
      await c.close();
    }
  });

  test('unary calls end on their status, with or without a message before it, and keep one connection', async () => {
    const exp = Math.floor(Date.now() / 1000) + 600;
    const validated = def.ValidateJWTSVID?.responseSerialize({
      spiffe_id: 'spiffe://example.org/caller',
      claims: jsonToStruct({ sub: 'spiffe://example.org/caller', aud: 'svc', exp }),
    }) as Buffer;
    let status = '0';
    const resets: number[] = [];
    handler = (stream) => {
      stream.on('close', () => resets.push(stream.rstCode));
      stream.respond(OK_HEADERS, { waitForTrailers: true });
      stream.on('wantTrailers', () =>
        stream.sendTrailers(status === '0' ? { 'grpc-status': '0' } : { 'grpc-status': status, 'grpc-message': 'bad' }),
      );
      stream.end(grpcFrame(validated));
    };
    const c = client();
    const before = sessions;
    try {
      for (let i = 0; i < 50; i++) {
        const svid = await c.validateJwtSvid('token', 'svc');
        assert.equal(svid.id.toString(), 'spiffe://example.org/caller');
        assert.deepEqual(svid.audience, ['svc']);
      }
      status = '3'; // a message, then an error status: the call fails with the status
      await assert.rejects(
        c.validateJwtSvid('token', 'svc'),
        (err: unknown) => err instanceof WorkloadApiError && err.grpcCode === 3 && /bad/.test(err.message),
      );
      status = '0';
      assert.equal((await c.validateJwtSvid('token', 'svc')).id.toString(), 'spiffe://example.org/caller');
      assert.equal(sessions - before, 1, 'every call on one connection: none was torn down');
      assert.equal(resets.length, 52);
      assert.ok(
        resets.every((code) => code === http2.constants.NGHTTP2_NO_ERROR),
        `streams reset: ${resets}`,
      );
    } finally {
      await c.close();
    }
  });

  test('300 concurrent calls against a server allowing 16 streams, some answers of 1 MB: one connection, none refused', async () => {
    const limited = http2.createServer({ settings: { maxConcurrentStreams: 16 } });
    let streams = 0;
    let sessionsSeen = 0;
    limited.on('session', () => sessionsSeen++);
    limited.on('stream', (stream) => {
      stream.on('error', () => {});
      const big = streams++ % 50 === 0;
      const tds = big ? Array.from({ length: 1000 }, (_, k) => `td${k}.example.org`) : ['example.org'];
      const msg = def.FetchJWTBundles?.responseSerialize({
        bundles: Object.fromEntries(tds.map((td) => [td, Buffer.from(`{"keys":[],"pad":"${'x'.repeat(1000)}"}`)])),
      }) as Buffer;
      stream.respond(OK_HEADERS, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      // Answers finish out of order, so streams free their slots in any order.
      setTimeout(() => stream.end(grpcFrame(msg)), Math.random() * 5);
    });
    const path = join(dir, 'limited.sock');
    await new Promise<void>((r) => limited.listen(path, r));
    const c = new WorkloadApiClient({ address: `unix://${path}`, timeoutMs: 20_000 });
    try {
      const sets = await Promise.all(Array.from({ length: 300 }, () => c.fetchJwtBundles()));
      const sizes = sets.map((s) => s.trustDomains().length);
      assert.equal(sizes.filter((n) => n === 1000).length, 6);
      assert.equal(sizes.filter((n) => n === 1).length, 294);
      assert.equal(streams, 300, 'no call was refused and retried');
      assert.equal(sessionsSeen, 1);
    } finally {
      await c.close();
      await new Promise((r) => limited.close(r));
    }
  });

  test('over TCP (IPv4 and IPv6 loopback), with the address as :authority', async (t) => {
    const ok: Handler = (stream) => {
      stream.respond(OK_HEADERS, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(grpcFrame(jwtBundles(['example.org'])));
    };
    for (const [host, shown] of [
      ['127.0.0.1', '127.0.0.1'],
      ['::1', '[::1]'],
    ] as const) {
      const tcp = http2.createServer();
      let authority: string | undefined;
      tcp.on('stream', (stream, headers) => {
        authority = headers[':authority'];
        ok(stream, headers);
      });
      const listening = await new Promise<boolean>((resolve) => {
        tcp.once('error', () => resolve(false));
        tcp.listen(0, host, () => resolve(true));
      });
      if (!listening) {
        t.diagnostic(`no ${host} on this machine: skipped`);
        continue;
      }
      const port = (tcp.address() as { port: number }).port;
      const c = new WorkloadApiClient({ address: `tcp://${shown}:${port}`, timeoutMs: 2000 });
      try {
        const set = await c.fetchJwtBundles();
        assert.deepEqual(set.trustDomains().map(String), ['example.org']);
        assert.equal(authority, `${shown}:${port}`);
      } finally {
        await c.close();
        await new Promise((r) => tcp.close(r));
      }
    }
  });

  test('a connection lost under an established call is retried at once on a new connection', async () => {
    let calls = 0;
    handler = (stream) => {
      calls++;
      if (calls === 2) {
        stream.session?.destroy(); // the second call loses its connection mid-call
        return;
      }
      stream.respond(OK_HEADERS);
      stream.end(grpcFrame(jwtBundles(['example.org'])));
    };
    // A long backoff: only an immediate retry can answer within the time limit.
    const c = client({ backoff: { initialMs: 5000, maxMs: 5000 }, timeoutMs: 1000 });
    const before = sessions;
    try {
      await c.fetchJwtBundles();
      const t0 = performance.now();
      const set = await c.fetchJwtBundles();
      assert.ok(performance.now() - t0 < 900);
      assert.deepEqual(set.trustDomains().map(String), ['example.org']);
      assert.equal(calls, 3);
      assert.equal(sessions - before, 2, 'one connection, then one new connection after the loss');
    } finally {
      await c.close();
    }
  });

  test('a server that never answers: each call ends at its own time limit, earlier limits first', async () => {
    handler = () => {}; // holds every stream open and ignores grpc-timeout
    const c = client();
    try {
      const t0 = performance.now();
      const outcome = (timeoutMs: number) =>
        c.fetchJwtBundles({ timeoutMs }).then(
          () => assert.fail('the fetch succeeded'),
          (e: WorkloadApiError) => ({ grpcCode: e.grpcCode, ms: performance.now() - t0 }),
        );
      // The long call arms the deadline timer first; the shorter ones, started after, must not wait for it.
      const [long, short, middle] = await Promise.all([outcome(1500), outcome(300), outcome(700)]);
      for (const r of [long, short, middle]) assert.equal(r.grpcCode, 4, 'DEADLINE_EXCEEDED');
      assert.ok(short.ms >= 290 && short.ms < 650, `short: ${short.ms}`);
      assert.ok(middle.ms >= 690 && middle.ms < 1200, `middle: ${middle.ms}`);
      assert.ok(long.ms >= 1490 && long.ms < 2200, `long: ${long.ms}`);

      handler = (stream) => {
        stream.respond(OK_HEADERS);
        stream.end(grpcFrame(jwtBundles(['example.org'])));
      };
      const set = await c.fetchJwtBundles({ timeoutMs: 1000 });
      assert.deepEqual(set.trustDomains().map(String), ['example.org'], 'the connection is still usable');
    } finally {
      await c.close();
    }
  });

  test('aborting a call in flight rejects it with the reason at once and resets its stream', async () => {
    const closed: number[] = [];
    handler = (stream) => stream.on('close', () => closed.push(stream.rstCode)); // never answers
    const c = client({ timeoutMs: 5000 });
    try {
      const ac = new AbortController();
      const t0 = performance.now();
      const call = c.fetchJwtBundles({ signal: ac.signal });
      setTimeout(() => ac.abort(new Error('caller gave up')), 150);
      await assert.rejects(call, /caller gave up/);
      assert.ok(performance.now() - t0 < 1000, 'rejected on abort, not at the time limit');
      for (let i = 0; i < 50 && closed.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(closed, [http2.constants.NGHTTP2_CANCEL], 'the server saw the stream cancelled');
    } finally {
      await c.close();
    }
  });

  test('an idle client does not keep the process alive; an open watch does', async () => {
    const script = (watch: boolean) => `
      import { WorkloadApiClient } from '@spiffe-ts/core';
      const c = new WorkloadApiClient({ address: ${JSON.stringify(address)} });
      await c.fetchJwtBundles();
      ${watch ? 'c.watchJwtBundles({ onUpdate() {} });' : ''}
      console.log('fetched');
    `;
    handler = (stream) => {
      stream.respond(OK_HEADERS);
      stream.write(grpcFrame(jwtBundles(['example.org']))); // streams stay open, as the Workload API's do
    };
    // Asynchronously: this process serves the child's calls.
    const run = (watch: boolean) =>
      new Promise<{ stdout: string; stderr: string; code: number | null; signal: string | null }>((resolve) => {
        const args = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script(watch)];
        const child = execFile(
          process.execPath,
          args,
          { cwd: join(import.meta.dirname, '..'), timeout: 4000 },
          (_err, stdout, stderr) => resolve({ stdout, stderr, code: child.exitCode, signal: child.signalCode }),
        );
      });
    const idle = await run(false);
    assert.equal(idle.stdout.trim(), 'fetched', idle.stderr);
    assert.equal(idle.code, 0, 'exits by itself once the fetch is done');
    const watching = await run(true);
    assert.equal(watching.stdout.trim(), 'fetched', watching.stderr);
    assert.equal(watching.signal, 'SIGTERM', 'still running at the 4 s limit: the watch holds it');
  });
});
