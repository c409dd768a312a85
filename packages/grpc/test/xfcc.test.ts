// Identity behind a proxy (trustedProxy + x-forwarded-client-cert metadata), tokens bound to the peer, and
// path allowlists, over real connections: mTLS from a "proxy" workload to a listenSpiffe port, and plain h2c
// on loopback as a local sidecar. The identities, XFCC headers and attack cases are shared with the other
// adapters (test/support/adapters.ts).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { JwtBundleSet, X509Source } from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import {
  jwtSvidAuthentication,
  jwtSvidOf,
  listenSpiffe,
  peerSpiffeIdOf,
  peerSpiffeIdSourceOf,
  type SpiffeDenial,
  type SpiffeListener,
  spiffeAuthorization,
  spiffeChannelCredentials,
  spiffeIdentity,
  spiffeServerTls,
} from '@spiffe-ts/grpc';
import {
  CLIENT,
  MALFORMED_XFCC,
  MULTI_HOP_XFCC,
  PROD_PREFIX_XFCC,
  PROXY,
  SERVER,
  untrustedXfccFrom,
  XFCC_HEADER,
  XFCC_WORKLOADS,
  type XfccOutcome,
  xfcc,
} from '../../../test/support/adapters.js';
import { type GreeterClient, type HelloReply, proto, type Unary } from './greeter.js';

const handler = (call: grpc.ServerUnaryCall<{ name: string }, HelloReply>, cb: grpc.sendUnaryData<HelloReply>) => {
  cb(null, {
    message: peerSpiffeIdSourceOf(call) ?? '',
    caller: peerSpiffeIdOf(call)?.toString() ?? '',
    tokenSubject: jwtSvidOf(call)?.id.toString() ?? '',
  });
};
const handlers = { sayHello: handler, whoami: handler };

type Result = { ok: true; res: HelloReply } | { ok: false; code: string | undefined; status: number };

function call(fn: Unary, headers: Record<string, string>): Promise<Result> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  return new Promise((resolve) => {
    fn({ name: 'x' }, md, { deadline: Date.now() + 5000 }, (err, res) => {
      if (!err) resolve({ ok: true, res: res as HelloReply });
      else resolve({ ok: false, code: err.metadata?.get('spiffe-error-code')[0]?.toString(), status: err.code });
    });
  });
}

let dev: DevWorkloadApiServer;
let serverSource: X509Source;
const sources: X509Source[] = [];
const clients: grpc.Client[] = [];

before(async () => {
  dev = await DevWorkloadApiServer.start({
    workloads: XFCC_WORKLOADS,
  });
  serverSource = await X509Source.create({ address: dev.address('server'), timeoutMs: 5000 });
});
after(async () => {
  for (const c of clients) c.close();
  for (const s of sources) await s.close();
  await serverSource.close();
  await dev.stop();
});

describe('@spiffe-ts/grpc trustedProxy over mTLS (proxy identified by SPIFFE ID)', () => {
  let server: grpc.Server;
  let listener: SpiffeListener;
  let target: string;
  const denials: SpiffeDenial[] = [];

  const greeterFor = async (workload: string) => {
    const source = await X509Source.create({ address: dev.address(workload), timeoutMs: 5000 });
    sources.push(source);
    const client = new proto.helloworld.Greeter(
      target,
      spiffeChannelCredentials(source, { authorize: SERVER }),
    ) as unknown as GreeterClient;
    clients.push(client);
    return client;
  };

  before(async () => {
    server = new grpc.Server({
      interceptors: [
        spiffeAuthorization({
          allow: [{ trustDomain: 'example.org', path: '/ns/*/sa/frontend' }, PROXY],
          methods: { '/helloworld.Greeter/Whoami': { trustDomain: 'example.org', pathPrefix: '/ns/prod' } },
          trustedProxy: { ids: [PROXY] },
          onDenied: (e) => denials.push(e),
        }),
        jwtSvidAuthentication({
          bundles: new JwtBundleSet([dev.ca.jwtBundle()]),
          audience: 'orders',
          bindToPeer: true,
          skip: ['/helloworld.Greeter/Whoami'],
        }),
      ],
    });
    server.addService(proto.helloworld.Greeter.service, handlers);
    listener = await listenSpiffe(server, spiffeServerTls(serverSource), { host: '127.0.0.1', port: 0 });
    target = `127.0.0.1:${listener.port}`;
  });
  after(async () => {
    await listener.close(100);
    server.forceShutdown();
  });

  /** Asserts a call's result against an expected outcome: the forwarded ID admitted, or PERMISSION_DENIED. */
  const assertOutcome = (r: Result, expected: XfccOutcome, what: string) => {
    if (expected.id !== undefined) {
      assert.ok(r.ok, `${what}: ${JSON.stringify(r)}`);
      assert.deepEqual([r.res.caller, r.res.message], [expected.id, 'proxy'], what);
    } else {
      assert.equal(!r.ok && r.code, expected.code, what);
      assert.equal(!r.ok && r.status, grpc.status.PERMISSION_DENIED, what);
    }
  };

  test('the trusted proxy forwards the client ID; handlers see it came from the proxy', async () => {
    const proxy = await greeterFor('proxy');
    const r = await call(proxy.whoami.bind(proxy), { [XFCC_HEADER]: xfcc(CLIENT) });
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.res.caller, CLIENT);
    assert.equal(r.res.message, 'proxy');
    const own = await call(proxy.whoami.bind(proxy), {});
    assert.ok(own.ok);
    assert.deepEqual([own.res.caller, own.res.message], [PROXY, 'connection']);
  });

  test('multi-hop and path allowlists: the last element is checked against the same lists', async () => {
    const proxy = await greeterFor('proxy');
    // SayHello allows the frontend IDs (and wants a token bound to the forwarded peer); Whoami the /ns/prod prefix.
    const token = (await dev.ca.issueJwtSvid(CLIENT, ['orders'])).token;
    for (const c of MULTI_HOP_XFCC) {
      const r = await call(proxy.sayHello.bind(proxy), { [XFCC_HEADER]: c.header, authorization: `Bearer ${token}` });
      assertOutcome(r, c, c.header);
    }
    for (const c of PROD_PREFIX_XFCC) {
      assertOutcome(await call(proxy.whoami.bind(proxy), { [XFCC_HEADER]: c.header }), c, c.header);
    }
  });

  test('spoofing: a direct client, or a proxy not on the list, sending XFCC is refused', async () => {
    denials.length = 0;
    for (const from of ['client', 'rogue'] as const) {
      const sender = await greeterFor(from);
      for (const h of untrustedXfccFrom(from)) {
        const r = await call(sender.whoami.bind(sender), { [XFCC_HEADER]: h });
        assert.equal(r.ok, false, `${from} ${h}`);
        assert.equal(!r.ok && r.code, 'XFCC_UNTRUSTED_PEER', `${from} ${h}`);
      }
    }
    assert.equal(denials[0]?.spiffeId?.toString(), CLIENT, 'the denial names the verified connection');
  });

  test('malformed metadata from the trusted proxy is refused', async () => {
    const proxy = await greeterFor('proxy');
    for (const h of MALFORMED_XFCC) {
      const r = await call(proxy.whoami.bind(proxy), { [XFCC_HEADER]: h });
      assert.equal(!r.ok && r.code, 'XFCC_MALFORMED', h);
    }
  });

  test('bindToPeer: the token subject must be the (forwarded) peer', async () => {
    const proxy = await greeterFor('proxy');
    const token = (await dev.ca.issueJwtSvid(CLIENT, ['orders'])).token;
    const h = { [XFCC_HEADER]: xfcc(CLIENT), authorization: `Bearer ${token}` };
    const r = await call(proxy.sayHello.bind(proxy), h);
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.res.tokenSubject, CLIENT);
    // The same token from the proxy itself: the peer is the proxy, not the token's subject.
    const unbound = await call(proxy.sayHello.bind(proxy), { authorization: `Bearer ${token}` });
    assert.equal(!unbound.ok && unbound.code, 'JWTSVID_NOT_BOUND_TO_PEER');
    assert.equal(!unbound.ok && unbound.status, grpc.status.UNAUTHENTICATED);
  });
});

describe('@spiffe-ts/grpc trustedProxy as a local sidecar (plain h2c on loopback)', () => {
  let server: grpc.Server;
  let client: GreeterClient;

  before(async () => {
    server = new grpc.Server({ interceptors: [spiffeIdentity({ trustedProxy: { localSidecar: true } })] });
    server.addService(proto.helloworld.Greeter.service, handlers);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    client = new proto.helloworld.Greeter(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as GreeterClient;
    clients.push(client);
  });
  after(() => {
    server.forceShutdown();
  });

  test('spiffeIdentity takes the sidecar-forwarded ID; no header, no ID', async () => {
    const r = await call(client.whoami.bind(client), { [XFCC_HEADER]: xfcc(CLIENT) });
    assert.ok(r.ok && r.res.caller === CLIENT && r.res.message === 'proxy', JSON.stringify(r));
    const none = await call(client.whoami.bind(client), {});
    assert.ok(none.ok && none.res.caller === '' && none.res.message === '');
    const bad = await call(client.whoami.bind(client), { [XFCC_HEADER]: 'URI=' });
    assert.equal(!bad.ok && bad.code, 'XFCC_MALFORMED');
  });

  test('bad options fail when the interceptor is built', () => {
    assert.throws(() => spiffeAuthorization({ allow: [], trustedProxy: {} }), TypeError);
    assert.throws(() => spiffeIdentity({ trustedProxy: { ids: ['spiffe://bad domain/x'] } }));
    assert.throws(() => spiffeAuthorization({ allow: { trustDomain: 'example.org', path: '/a/b*' } }));
  });
});
