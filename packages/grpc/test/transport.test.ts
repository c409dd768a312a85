// Which connections a SPIFFE ID or a JWT-SVID may come from, over real sockets: plaintext loopback, unix
// sockets and a non-loopback address for jwtSvidAuthentication's allowInsecureTransport; per-call JWT-SVID
// credentials on insecure and secure channels; the grpc-js version check.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { JwtBundleSet, type JwtSvid, type JwtSvidSource, SpiffeError, StaticX509Source } from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';
import {
  allowJwtSvids,
  type CallWithPeer,
  type JwtSvidAuthenticationOptions,
  jwtSvidAuthentication,
  jwtSvidCallCredentials,
  jwtSvidOf,
  listenSpiffe,
  peerSpiffeIdOf,
  spiffeAuthorization,
  spiffeChannelCredentials,
  spiffeIdentity,
} from '@spiffe-ts/grpc';
import { ORDERS, PAYMENTS } from '../../../test/support/adapters.js';

const AUDIENCE = 'probe';

// A one-method service with raw byte messages: the reply is JSON of what the handler saw.
const raw = (b: Buffer) => b;
const PROBE: grpc.ServiceDefinition = {
  call: {
    path: '/probe.Probe/Call',
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
};
const ProbeClient = grpc.makeGenericClientConstructor(PROBE, 'Probe');
interface Seen {
  id: string;
  token: string;
  authorization: number;
}
type RawUnary = (
  req: Buffer,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: Buffer) => void,
) => void;

function probe(client: grpc.Client, options: grpc.CallOptions = {}, metadata = new grpc.Metadata()): Promise<Seen> {
  const call = (client as unknown as { call: RawUnary }).call.bind(client);
  return new Promise((resolve, reject) => {
    call(Buffer.alloc(0), metadata, { deadline: Date.now() + 5000, ...options }, (err, res) =>
      err ? reject(err) : resolve(JSON.parse(String(res)) as Seen),
    );
  });
}

/** A server with the probe service; every call reaching a handler is recorded. */
function probeServer(interceptors: grpc.ServerInterceptor[]) {
  const handled: Seen[] = [];
  const server = new grpc.Server({ interceptors });
  server.addService(PROBE, {
    call: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const seen: Seen = {
        id: peerSpiffeIdOf(call)?.toString() ?? '',
        token: jwtSvidOf(call)?.id.toString() ?? '',
        authorization: call.metadata.get('authorization').length,
      };
      handled.push(seen);
      cb(null, Buffer.from(JSON.stringify(seen)));
    },
  });
  return { server, handled };
}

function bind(server: grpc.Server, address: string, creds = grpc.ServerCredentials.createInsecure()) {
  return new Promise<number>((resolve, reject) =>
    server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))),
  );
}

const bearer = (token: string) => {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
};

let ca: DevCa;
let bundles: JwtBundleSet;
let token: JwtSvid;
const closers: Array<() => unknown> = [];

before(async () => {
  ca = await DevCa.create({ trustDomain: 'example.org' });
  bundles = new JwtBundleSet([ca.jwtBundle()]);
  token = await ca.issueJwtSvid(PAYMENTS, AUDIENCE);
});
after(async () => {
  for (const close of closers.reverse()) await close();
});

function client(target: string, creds: grpc.ChannelCredentials): grpc.Client {
  const c = new ProbeClient(target, creds);
  closers.push(() => c.close());
  return c;
}

describe('jwtSvidAuthentication: transport', () => {
  const serve = async (address: string, options: Partial<JwtSvidAuthenticationOptions> = {}) => {
    const { server, handled } = probeServer([jwtSvidAuthentication({ bundles, audience: AUDIENCE, ...options })]);
    const port = await bind(server, address);
    closers.push(() => server.forceShutdown());
    return { port, handled };
  };

  test('plaintext loopback: a valid token is refused (UNAUTHENTICATED) by default', async () => {
    const denied: string[] = [];
    const { port, handled } = await serve('127.0.0.1:0', { onDenied: (e) => denied.push(`${e.route} ${e.code}`) });
    const c = client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    await assert.rejects(probe(c, {}, bearer(token.token)), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      assert.equal(err.details, 'JWTSVID_INSECURE_TRANSPORT: bearer tokens are not accepted on this connection');
      assert.deepEqual(err.metadata.get('spiffe-error-code'), ['JWTSVID_INSECURE_TRANSPORT']);
      return true;
    });
    assert.deepEqual(handled, []);
    assert.equal(denied.length, 1);
    assert.match(String(denied[0]), / JWTSVID_INSECURE_TRANSPORT$/);
  });

  test('allowInsecureTransport on loopback (IPv4 and IPv6): the token is validated and the handler sees it', async () => {
    const v4 = await serve('127.0.0.1:0', { allowInsecureTransport: true });
    const c4 = client(`127.0.0.1:${v4.port}`, grpc.credentials.createInsecure());
    assert.equal((await probe(c4, {}, bearer(token.token))).token, PAYMENTS);
    // still validated: a token for another audience is refused
    const other = await ca.issueJwtSvid(PAYMENTS, 'billing');
    await assert.rejects(probe(c4, {}, bearer(other.token)), { code: grpc.status.UNAUTHENTICATED });
    await assert.rejects(probe(c4), { code: grpc.status.UNAUTHENTICATED });

    if (!Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address === '::1'))) return;
    const v6 = await serve('[::1]:0', { allowInsecureTransport: true });
    const c6 = client(`[::1]:${v6.port}`, grpc.credentials.createInsecure());
    assert.equal((await probe(c6, {}, bearer(token.token))).token, PAYMENTS);
  });

  test('allowInsecureTransport over a unix socket: accepted', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spiffe-grpc-'));
    closers.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'probe.sock');
    await serve(`unix:${path}`, { allowInsecureTransport: true });
    const c = client(`unix:${path}`, grpc.credentials.createInsecure());
    assert.equal((await probe(c, {}, bearer(token.token))).token, PAYMENTS);
    // and refused there without the option
    const dir2 = await mkdtemp(join(tmpdir(), 'spiffe-grpc-'));
    closers.push(() => rm(dir2, { recursive: true, force: true }));
    await serve(`unix:${join(dir2, 'probe.sock')}`);
    const c2 = client(`unix:${join(dir2, 'probe.sock')}`, grpc.credentials.createInsecure());
    await assert.rejects(probe(c2, {}, bearer(token.token)), { code: grpc.status.UNAUTHENTICATED });
  });

  const external = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && !i.internal && i.family === 'IPv4')?.address;
  test('allowInsecureTransport from a non-loopback address: refused', {
    skip: external ? false : 'no non-loopback IPv4 address on this host',
  }, async () => {
    const { port, handled } = await serve(`${external}:0`, { allowInsecureTransport: true });
    const c = client(`${external}:${port}`, grpc.credentials.createInsecure());
    await assert.rejects(probe(c, {}, bearer(token.token)), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      assert.match(err.details, /^JWTSVID_INSECURE_TRANSPORT: /);
      return true;
    });
    assert.deepEqual(handled, []);
  });

  test('over SPIFFE mTLS the token is accepted without any option', async () => {
    const { server } = probeServer([jwtSvidAuthentication({ bundles, audience: AUDIENCE })]);
    closers.push(() => server.forceShutdown());
    const serverSource = new StaticX509Source(await ca.issueX509Svid(ORDERS), ca.x509Bundle());
    const listener = await listenSpiffe(server, { source: serverSource });
    closers.push(() => listener.close(50));
    const clientSource = new StaticX509Source(await ca.issueX509Svid(PAYMENTS), ca.x509Bundle());
    const c = client(`127.0.0.1:${listener.port}`, spiffeChannelCredentials(clientSource, { authorize: ORDERS }));
    assert.equal((await probe(c, {}, bearer(token.token))).token, PAYMENTS);
  });

  test('allowInsecureTransport is typed boolean and checked', () => {
    // @ts-expect-error a string is not a boolean
    const options: JwtSvidAuthenticationOptions = { bundles, audience: AUDIENCE, allowInsecureTransport: 'yes' };
    assert.throws(() => jwtSvidAuthentication(options), TypeError);
  });
});

describe('jwtSvidCallCredentials: never on an insecure channel', () => {
  const jwtSource: JwtSvidSource = { fetchJwtSvid: async () => token };
  let plainPort: number;
  let plainHandled: Seen[];
  let spiffeTarget: string;
  let clientSource: StaticX509Source;
  let serverSource: StaticX509Source;

  before(async () => {
    const plain = probeServer([]);
    plainHandled = plain.handled;
    plainPort = await bind(plain.server, '127.0.0.1:0');
    closers.push(() => plain.server.forceShutdown());
    const secure = probeServer([jwtSvidAuthentication({ bundles, audience: AUDIENCE })]);
    closers.push(() => secure.server.forceShutdown());
    serverSource = new StaticX509Source(await ca.issueX509Svid(ORDERS), ca.x509Bundle());
    const listener = await listenSpiffe(secure.server, { source: serverSource });
    closers.push(() => listener.close(50));
    spiffeTarget = `127.0.0.1:${listener.port}`;
    clientSource = new StaticX509Source(await ca.issueX509Svid(PAYMENTS), ca.x509Bundle());
  });

  test('control: grpc-js itself sends per-call credentials on an insecure channel', async () => {
    // Why jwtSvidCallCredentials has to check: plain metadata-generator credentials given per call go out
    // in clear (grpc-js 1.14.7); combineChannelCredentials is the only place grpc-js refuses insecure ones.
    const plainCreds = grpc.credentials.createFromMetadataGenerator((_p, cb) => cb(null, bearer('visible')));
    const c = client(`127.0.0.1:${plainPort}`, grpc.credentials.createInsecure());
    assert.equal((await probe(c, { credentials: plainCreds })).authorization, 1);
    assert.throws(() => grpc.credentials.combineChannelCredentials(grpc.credentials.createInsecure(), plainCreds));
  });

  test('per call on an insecure channel: UNAUTHENTICATED client-side, nothing reaches the server', async () => {
    const before = plainHandled.length;
    const c = client(`127.0.0.1:${plainPort}`, grpc.credentials.createInsecure());
    const creds = jwtSvidCallCredentials(jwtSource, { audience: AUDIENCE });
    await assert.rejects(probe(c, { credentials: creds }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      assert.match(err.details, /not known to be secure/);
      return true;
    });
    // also combined with other call credentials
    const combined = grpc.credentials.combineCallCredentials(
      grpc.credentials.createFromMetadataGenerator((_p, cb) => cb(null, new grpc.Metadata())),
      creds,
    );
    await assert.rejects(probe(c, { credentials: combined }), { code: grpc.status.UNAUTHENTICATED });
    assert.equal(plainHandled.length, before, 'no call reached the server');
  });

  test('per call and combined on a SPIFFE channel: the token is sent and validated', async () => {
    const creds = jwtSvidCallCredentials(jwtSource, { audience: AUDIENCE });
    const perCall = client(spiffeTarget, spiffeChannelCredentials(clientSource, { authorize: ORDERS }));
    assert.equal((await probe(perCall, { credentials: creds })).token, PAYMENTS);
    const combined = client(
      spiffeTarget,
      grpc.credentials.combineChannelCredentials(spiffeChannelCredentials(clientSource, { authorize: ORDERS }), creds),
    );
    assert.equal((await probe(combined)).token, PAYMENTS);
  });

  test('other TLS credentials: refused until marked with allowJwtSvids; insecure ones cannot be marked', async () => {
    const svid = clientSource.getX509Svid();
    const tlsCreds = () =>
      grpc.credentials.createSsl(
        Buffer.from(ca.currentAuthority.certificate.toString()),
        Buffer.from(svid.privateKey.export({ format: 'pem', type: 'pkcs8' })),
        Buffer.from(svid.certificates.map((cert) => cert.toString()).join('')),
        { checkServerIdentity: () => undefined }, // the test server has no DNS name; not what is tested here
      );
    const creds = jwtSvidCallCredentials(jwtSource, { audience: AUDIENCE });
    const unmarked = client(spiffeTarget, grpc.credentials.combineChannelCredentials(tlsCreds(), creds));
    await assert.rejects(probe(unmarked), { code: grpc.status.UNAUTHENTICATED });
    const marked = client(spiffeTarget, grpc.credentials.combineChannelCredentials(allowJwtSvids(tlsCreds()), creds));
    assert.equal((await probe(marked)).token, PAYMENTS);
    assert.throws(() => allowJwtSvids(grpc.credentials.createInsecure()), /Cannot compose insecure credentials/);
  });
});

describe('peerSpiffeIdOf in handlers and interceptors', () => {
  test('handlers get the ID only through spiffeIdentity or spiffeAuthorization; interceptors always', async () => {
    const serverSource = new StaticX509Source(await ca.issueX509Svid(ORDERS), ca.x509Bundle());
    const clientSource = new StaticX509Source(await ca.issueX509Svid(PAYMENTS), ca.x509Bundle());
    const inInterceptor: string[] = [];
    const recorder: grpc.ServerInterceptor = (_d, call) =>
      new grpc.ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMetadata: (md, mdNext) => {
              inInterceptor.push(peerSpiffeIdOf(call)?.toString() ?? '');
              mdNext(md);
            },
          }),
      });
    for (const [extra, expected] of [
      [[], ''],
      [[spiffeIdentity()], PAYMENTS],
      [[spiffeAuthorization({ allow: [PAYMENTS] })], PAYMENTS],
    ] as const) {
      const { server } = probeServer([recorder, ...extra]);
      closers.push(() => server.forceShutdown());
      const listener = await listenSpiffe(server, { source: serverSource });
      closers.push(() => listener.close(50));
      const c = client(`127.0.0.1:${listener.port}`, spiffeChannelCredentials(clientSource, { authorize: ORDERS }));
      assert.equal((await probe(c)).id, expected);
    }
    assert.deepEqual(inInterceptor, [PAYMENTS, PAYMENTS, PAYMENTS]);
  });
});

describe('grpc-js without getConnectionInfo (< 1.14.0)', () => {
  test('listenSpiffe, the interceptors and peerSpiffeIdOf fail loudly with GRPC_UNSUPPORTED_VERSION', async () => {
    const proto = grpc.ServerInterceptingCall.prototype;
    const original = Object.getOwnPropertyDescriptor(proto, 'getConnectionInfo');
    assert.ok(original, 'this grpc-js has getConnectionInfo');
    const unsupported = (err: unknown) =>
      err instanceof SpiffeError && err.code === 'GRPC_UNSUPPORTED_VERSION' && /1\.14\.0/.test(err.message);
    Reflect.deleteProperty(proto, 'getConnectionInfo');
    try {
      const server = new grpc.Server();
      const source = new StaticX509Source(await ca.issueX509Svid(ORDERS), ca.x509Bundle());
      await assert.rejects(listenSpiffe(server, { source }), unsupported);
      assert.throws(() => spiffeAuthorization({ allow: [PAYMENTS] }), unsupported);
      assert.throws(() => spiffeIdentity(), unsupported);
      assert.throws(() => jwtSvidAuthentication({ bundles, audience: AUDIENCE }), unsupported);
    } finally {
      Object.defineProperty(proto, 'getConnectionInfo', original);
    }
    // an interceptor call of such a version: neither getConnectionInfo nor metadata
    const oldCall = { getAuthContext: () => ({}), getPeer: () => '127.0.0.1:1' } as unknown as CallWithPeer;
    assert.throws(() => peerSpiffeIdOf(oldCall), unsupported);
  });
});
