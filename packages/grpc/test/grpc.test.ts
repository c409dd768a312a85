import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { JwtBundleSet, JwtSource, matchId, matchMemberOf, X509Source, type X509Svid } from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import {
  jwtSvidAuthentication,
  jwtSvidCallCredentials,
  jwtSvidOf,
  listenSpiffe,
  peerSpiffeIdOf,
  type SpiffeDenial,
  type SpiffeListener,
  spiffeAuthorization,
  spiffeChannelCredentials,
  spiffeIdentity,
  spiffeServerTls,
} from '@spiffe-ts/grpc';
import {
  assertRotationUnderLoad,
  captureLogger,
  handshakeRefusedSvids,
  type MtlsFixture,
  ORDERS,
  OTHER,
  PAYMENTS,
  presentingSvid,
  refusedJwtSvids,
  selfSignedClientCert,
  startMtlsFixture,
} from '../../../test/support/adapters.js';
import { type AdminClient, type GreeterClient, type HelloReply, proto, type Unary } from './greeter.js';

// A pino-compatible logger given to the listener and the interceptor.
const { logger, lineFor: logLineFor } = captureLogger();

function unary(fn: Unary, req: { name: string }, timeoutMs = 5000): Promise<HelloReply> {
  return new Promise((resolve, reject) => {
    fn(req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as HelloReply)));
  });
}

const handlers = {
  sayHello: (call: grpc.ServerUnaryCall<{ name: string }, HelloReply>, cb: grpc.sendUnaryData<HelloReply>) => {
    cb(null, {
      message: `hello ${call.request.name}`,
      caller: peerSpiffeIdOf(call)?.toString() ?? '',
      tokenSubject: jwtSvidOf(call)?.id.toString() ?? '',
    });
  },
  whoami: (call: grpc.ServerUnaryCall<{ name: string }, HelloReply>, cb: grpc.sendUnaryData<HelloReply>) => {
    cb(null, { message: 'you are', caller: peerSpiffeIdOf(call)?.toString() ?? '', tokenSubject: '' });
  },
};

describe('@spiffe-ts/grpc over real mTLS sockets', () => {
  let fx: MtlsFixture;
  let dev: DevWorkloadApiServer;
  let serverSource: X509Source;
  let server: grpc.Server;
  let listener: SpiffeListener;
  let target: string;
  const denials: string[] = [];
  const clients: grpc.Client[] = [];
  const sources: X509Source[] = [];

  const greeterFor = async (workload: string, authorize: string = ORDERS) => {
    const source = await X509Source.create({ address: dev.address(workload), timeoutMs: 5000 });
    sources.push(source);
    const client = new proto.helloworld.Greeter(
      target,
      spiffeChannelCredentials(source, { authorize }),
    ) as unknown as GreeterClient;
    clients.push(client);
    return client;
  };

  const greeterWithSvid = (svid: X509Svid) => {
    const client = new proto.helloworld.Greeter(
      target,
      spiffeChannelCredentials(presentingSvid(fx, svid), { authorize: ORDERS }),
    ) as unknown as GreeterClient;
    clients.push(client);
    return client;
  };

  before(async () => {
    fx = await startMtlsFixture();
    ({ dev, serverSource } = fx);
    server = new grpc.Server({
      interceptors: [
        spiffeAuthorization({
          methods: {
            '/helloworld.Greeter/SayHello': [PAYMENTS],
            '/helloworld.Greeter/Whoami': matchMemberOf('example.org'),
          },
          onDenied: (e) => denials.push(`${e.route} ${e.spiffeId} ${e.code}`),
          logger,
        }),
      ],
    });
    server.addService(proto.helloworld.Greeter.service, handlers);
    server.addService(proto.helloworld.Admin.service, { reset: handlers.sayHello });
    listener = await listenSpiffe(server, spiffeServerTls(serverSource), { logger });
    target = `127.0.0.1:${listener.port}`;
  });

  after(async () => {
    for (const c of clients) c.close();
    await listener.close(100);
    server.forceShutdown();
    for (const s of sources) await s.close();
    await fx.close();
  });

  test('allowed caller: OK, and the handler sees its verified SPIFFE ID', async () => {
    const client = await greeterFor('payments');
    const res = await unary(client.sayHello.bind(client), { name: 'bob' });
    assert.equal(res.message, 'hello bob');
    assert.equal(res.caller, PAYMENTS);
  });

  test('another verified ID: PERMISSION_DENIED on that method, OK where its trust domain is allowed', async () => {
    const client = await greeterFor('other');
    await assert.rejects(unary(client.sayHello.bind(client), { name: 'x' }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.PERMISSION_DENIED);
      assert.equal(err.details, 'UNAUTHORIZED_SPIFFE_ID: SPIFFE ID not authorized');
      return true;
    });
    assert.ok(denials.includes(`/helloworld.Greeter/SayHello ${OTHER} UNAUTHORIZED_SPIFFE_ID`), denials.join('\n'));
    const line = await logLineFor('UNAUTHORIZED_SPIFFE_ID');
    assert.equal(line.message, 'SPIFFE: request denied');
    assert.equal(line.fields.route, '/helloworld.Greeter/SayHello');
    assert.equal(line.fields.spiffeId, OTHER);
    assert.equal(line.fields.remoteAddress, '127.0.0.1');
    assert.equal((await unary(client.whoami.bind(client), { name: 'x' })).caller, OTHER);
  });

  test('deny by default: a method with no allowlist entry is refused', async () => {
    const source = await X509Source.create({ address: dev.address('payments'), timeoutMs: 5000 });
    sources.push(source);
    const admin = new proto.helloworld.Admin(
      target,
      spiffeChannelCredentials(source, { authorize: ORDERS }),
    ) as unknown as AdminClient;
    clients.push(admin);
    await assert.rejects(unary(admin.reset.bind(admin), { name: 'x' }), { code: grpc.status.PERMISSION_DENIED });
  });

  test('the client verifies the server by SPIFFE ID, not hostname', async () => {
    const client = await greeterFor('payments', 'spiffe://example.org/service/somebody-else');
    await assert.rejects(unary(client.sayHello.bind(client), { name: 'x' }, 2000), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAVAILABLE);
      return true;
    });
  });

  test('a self-signed client shows up in the listener logger with its reason', async () => {
    const self = await selfSignedClientCert(PAYMENTS);
    await new Promise<void>((resolve) => {
      const s = tls.connect({
        host: '127.0.0.1',
        port: listener.port,
        ALPNProtocols: ['h2'],
        rejectUnauthorized: false,
        ...self,
      });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    const line = await logLineFor('TLS_SELF_SIGNED');
    assert.equal(line.message, 'SPIFFE: TLS handshake refused');
    assert.equal(line.fields.remoteAddress, '127.0.0.1');
  });

  test('untrusted CA, cross-trust-domain and expired certificates fail the handshake', async () => {
    for (const { name, svid } of await handshakeRefusedSvids(fx)) {
      const client = greeterWithSvid(svid);
      await assert.rejects(
        unary(client.sayHello.bind(client), { name }, 2000),
        (err: grpc.ServiceError) => {
          // The handshake never completes, so no call reaches the server: UNAVAILABLE, not PERMISSION_DENIED.
          assert.equal(err.code, grpc.status.UNAVAILABLE, `${name}: ${err.message}`);
          return true;
        },
        name,
      );
    }
    // control: a good SVID over the same path works
    const good = greeterWithSvid(await dev.ca.issueX509Svid(PAYMENTS));
    assert.equal((await unary(good.sayHello.bind(good), { name: 'ok' })).caller, PAYMENTS);
  });

  test('SVID and CA rotation under a stream of calls: zero failed calls', async () => {
    const source = await X509Source.create({ address: dev.address('payments'), timeoutMs: 5000 });
    sources.push(source);
    const newClient = () => {
      const c = new proto.helloworld.Greeter(target, spiffeChannelCredentials(source, { authorize: ORDERS }), {
        // a fresh subchannel per client, so new connections (and handshakes) happen during the rotation
        'grpc.use_local_subchannel_pool': 1,
      }) as unknown as GreeterClient;
      return c;
    };
    const longLived = newClient();
    try {
      // workers 0 and 1 share a long-lived client; worker 2 makes a new client (and connection) per call
      await assertRotationUnderLoad(
        fx,
        'gRPC',
        async (worker) => {
          const fresh = worker === 2;
          const c = fresh ? newClient() : longLived;
          try {
            const res = await unary(c.sayHello.bind(c), { name: 'load' });
            if (res.caller !== PAYMENTS) throw new Error(`caller ${res.caller}`);
          } finally {
            if (fresh) c.close();
          }
        },
        async () => {
          // new connections now chain to the new CA only
          const fresh = newClient();
          assert.equal((await unary(fresh.sayHello.bind(fresh), { name: 'after' })).caller, PAYMENTS);
          fresh.close();
        },
      );
    } finally {
      longLived.close();
    }
  });
});

describe('@spiffe-ts/grpc JWT-SVID call credentials and validation', () => {
  let dev: DevWorkloadApiServer;
  let serverSource: X509Source;
  let jwtServer: JwtSource;
  let server: grpc.Server;
  let listener: SpiffeListener;
  let target: string;
  const closers: Array<() => unknown> = [];

  before(async () => {
    dev = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS, payments: PAYMENTS, other: OTHER } });
    serverSource = await X509Source.create({ address: dev.address('orders'), timeoutMs: 5000 });
    jwtServer = await JwtSource.create({ address: dev.address('orders'), timeoutMs: 5000 });
    server = new grpc.Server({
      interceptors: [
        // handlers see the mTLS peer's ID only through one of our interceptors (no authorization here)
        spiffeIdentity(),
        jwtSvidAuthentication({
          bundles: jwtServer,
          audience: 'greeter',
          skip: ['/helloworld.Greeter/Whoami'],
        }),
      ],
    });
    server.addService(proto.helloworld.Greeter.service, handlers);
    listener = await listenSpiffe(server, { source: serverSource });
    target = `127.0.0.1:${listener.port}`;
  });

  after(async () => {
    for (const c of closers) await c();
    await listener.close(100);
    server.forceShutdown();
    await jwtServer.close();
    await serverSource.close();
    await dev.stop();
  });

  const clientWith = async (callCreds?: grpc.CallCredentials) => {
    const source = await X509Source.create({ address: dev.address('payments'), timeoutMs: 5000 });
    const channel = spiffeChannelCredentials(source, { authorize: matchId(ORDERS) });
    const client = new proto.helloworld.Greeter(
      target,
      callCreds ? grpc.credentials.combineChannelCredentials(channel, callCreds) : channel,
    ) as unknown as GreeterClient;
    closers.push(
      () => client.close(),
      () => source.close(),
    );
    return client;
  };

  const staticToken = (token: string) =>
    grpc.credentials.createFromMetadataGenerator((_p, cb) => {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${token}`);
      cb(null, md);
    });

  test('a JWT-SVID from the Workload API is attached and validated; the handler sees its subject', async () => {
    const jwt = await JwtSource.create({ address: dev.address('payments'), timeoutMs: 5000 });
    closers.push(() => jwt.close());
    const client = await clientWith(jwtSvidCallCredentials(jwt, { audience: 'greeter' }));
    const res = await unary(client.sayHello.bind(client), { name: 'jwt' });
    assert.equal(res.tokenSubject, PAYMENTS);
    assert.equal(res.caller, PAYMENTS);
  });

  test('missing, expired, wrong-audience and foreign tokens: UNAUTHENTICATED', async () => {
    const none = await clientWith();
    await assert.rejects(unary(none.sayHello.bind(none), { name: 'x' }), { code: grpc.status.UNAUTHENTICATED });
    assert.equal((await unary(none.whoami.bind(none), { name: 'x' })).caller, PAYMENTS, 'skipped method');

    for (const { name, token, code } of await refusedJwtSvids(dev.ca, 'greeter')) {
      const client = await clientWith(staticToken(token));
      await assert.rejects(
        unary(client.sayHello.bind(client), { name }),
        (err: grpc.ServiceError) => {
          assert.equal(err.code, grpc.status.UNAUTHENTICATED, name);
          assert.deepEqual(err.metadata.get('spiffe-error-code'), [code], name);
          return true;
        },
        name,
      );
    }
  });

  test('a subject allowlist answers PERMISSION_DENIED to other valid subjects', async () => {
    const s = new grpc.Server({
      interceptors: [
        jwtSvidAuthentication({
          bundles: new JwtBundleSet([dev.ca.jwtBundle()]),
          audience: 'greeter',
          allow: [PAYMENTS],
        }),
      ],
    });
    s.addService(proto.helloworld.Greeter.service, handlers);
    const l = await listenSpiffe(s, { source: serverSource });
    try {
      const source = await X509Source.create({ address: dev.address('payments'), timeoutMs: 5000 });
      closers.push(() => source.close());
      const creds = spiffeChannelCredentials(source, { authorize: ORDERS });
      const token = (await dev.ca.issueJwtSvid(OTHER, 'greeter')).token;
      const client = new proto.helloworld.Greeter(
        `127.0.0.1:${l.port}`,
        grpc.credentials.combineChannelCredentials(creds, staticToken(token)),
      ) as unknown as GreeterClient;
      closers.push(() => client.close());
      await assert.rejects(unary(client.sayHello.bind(client), { name: 'x' }), {
        code: grpc.status.PERMISSION_DENIED,
      });
    } finally {
      await l.close(100);
      s.forceShutdown();
    }
  });
});

test("onDenied and the client's status receive every kind of denial with its code", async () => {
  const dev = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS, payments: PAYMENTS, other: OTHER } });
  const serverSource = await X509Source.create({ address: dev.address('orders'), timeoutMs: 5000 });
  const denied: SpiffeDenial[] = [];
  const onDenied = (e: SpiffeDenial) => denied.push(e);
  const server = new grpc.Server({
    interceptors: [
      spiffeAuthorization({ allow: [PAYMENTS], onDenied }),
      jwtSvidAuthentication({ bundles: new JwtBundleSet([dev.ca.jwtBundle()]), audience: 'greeter', onDenied }),
    ],
  });
  server.addService(proto.helloworld.Greeter.service, handlers);
  const listener = await listenSpiffe(server, spiffeServerTls(serverSource), { host: '127.0.0.1', port: 0 });
  // a plaintext port of the same server: real connections without a verified SPIFFE ID
  const plainPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
  const sources: X509Source[] = [];
  const clients: grpc.Client[] = [];
  const greeter = async (workload: string | undefined, token?: string) => {
    let creds: grpc.ChannelCredentials;
    if (workload === undefined) creds = grpc.credentials.createInsecure();
    else {
      const source = await X509Source.create({ address: dev.address(workload), timeoutMs: 5000 });
      sources.push(source);
      creds = spiffeChannelCredentials(source, { authorize: ORDERS });
      if (token) {
        creds = grpc.credentials.combineChannelCredentials(
          creds,
          grpc.credentials.createFromMetadataGenerator((_p, cb) => {
            const md = new grpc.Metadata();
            md.set('authorization', `Bearer ${token}`);
            cb(null, md);
          }),
        );
      }
    }
    const target = workload === undefined ? `127.0.0.1:${plainPort}` : `127.0.0.1:${listener.port}`;
    const client = new proto.helloworld.Greeter(target, creds) as unknown as GreeterClient;
    clients.push(client);
    return client;
  };
  const statusOf = async (client: GreeterClient) => {
    const err = await unary(client.sayHello.bind(client), { name: 'x' }).then(
      () => assert.fail('the call must be denied'),
      (e: grpc.ServiceError) => e,
    );
    return { code: err.code, details: err.details, md: err.metadata.get('spiffe-error-code') };
  };
  try {
    assert.deepEqual(await statusOf(await greeter(undefined)), {
      code: grpc.status.PERMISSION_DENIED,
      details: 'PEER_NOT_VERIFIED: no verified SPIFFE ID for this connection',
      md: ['PEER_NOT_VERIFIED'],
    });
    assert.deepEqual(await statusOf(await greeter('other')), {
      code: grpc.status.PERMISSION_DENIED,
      details: 'UNAUTHORIZED_SPIFFE_ID: SPIFFE ID not authorized',
      md: ['UNAUTHORIZED_SPIFFE_ID'],
    });
    assert.deepEqual(await statusOf(await greeter('payments', 'not-a-jwt')), {
      code: grpc.status.UNAUTHENTICATED,
      details: 'JWTSVID_MALFORMED: invalid JWT-SVID',
      md: ['JWTSVID_MALFORMED'],
    });
    assert.deepEqual(
      denied.map((e) => ({ ...e, spiffeId: e.spiffeId?.toString() })),
      [
        {
          code: 'PEER_NOT_VERIFIED',
          message: 'no verified SPIFFE ID for this connection',
          statusCode: 403,
          route: '/helloworld.Greeter/SayHello',
          remoteAddress: '127.0.0.1',
          spiffeId: undefined,
        },
        {
          code: 'UNAUTHORIZED_SPIFFE_ID',
          message: 'SPIFFE ID not authorized',
          statusCode: 403,
          route: '/helloworld.Greeter/SayHello',
          remoteAddress: '127.0.0.1',
          spiffeId: OTHER,
        },
        {
          code: 'JWTSVID_MALFORMED',
          message: 'invalid JWT-SVID',
          statusCode: 401,
          route: '/helloworld.Greeter/SayHello',
          remoteAddress: '127.0.0.1',
          spiffeId: PAYMENTS, // the JWT denial names the verified mTLS peer too
        },
      ],
    );
  } finally {
    for (const c of clients) c.close();
    await listener.close(100);
    server.forceShutdown();
    for (const s of sources) await s.close();
    await serverSource.close();
    await dev.stop();
  }
});

test('method patterns are validated up front', () => {
  assert.throws(() => spiffeAuthorization({ methods: { 'Greeter.SayHello': [PAYMENTS] } }), TypeError);
  assert.throws(() => spiffeAuthorization({ methods: { '/a.B/C': ['not-a-spiffe-id'] } }));
});
