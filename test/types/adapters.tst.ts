// Type tests (tstyche): what each adapter adds to its framework's types, and its options.
import type * as grpc from '@grpc/grpc-js';
import type { JwtBundleSet, JwtSvid, SpiffeId } from '@spiffe-ts/core';
import { allowSpiffeIds, jwtSvid, requirePeer } from '@spiffe-ts/express';
import { fastifySpiffe } from '@spiffe-ts/fastify';
import { jwtSvidOf, peerSpiffeIdOf, spiffeAuthorization, spiffeIdOf } from '@spiffe-ts/grpc';
import { AllowSpiffeIds, AllowTrustDomain, BearerJwtSvid, PeerSpiffeId, RequireJwtSvid } from '@spiffe-ts/nestjs';
import type { Request, RequestHandler } from 'express';
import Fastify, { type FastifyRequest } from 'fastify';
import { describe, expect, test } from 'tstyche';

declare const bundles: JwtBundleSet;

describe('@spiffe-ts/fastify', () => {
  test('request.spiffeId and request.jwtSvid (declaration merging)', () => {
    expect<FastifyRequest['spiffeId']>().type.toBe<SpiffeId | undefined>();
    expect<FastifyRequest['jwtSvid']>().type.toBe<JwtSvid | undefined>();
    const app = Fastify();
    app.get('/orders', async (request) => {
      expect(request.spiffeId).type.toBe<SpiffeId | undefined>();
      expect(request.jwtSvid).type.toBe<JwtSvid | undefined>();
      return {};
    });
  });

  test('plugin options', () => {
    const app = Fastify();
    expect(app.register(fastifySpiffe, { allow: 'spiffe://example.org/service/payments' })).type.not.toRaiseError();
    expect(
      app.register(fastifySpiffe, { jwt: { bundles, audience: 'orders', allow: { trustDomain: 'example.org' } } }),
    ).type.not.toRaiseError();
    expect(app.register(fastifySpiffe, { allow: 42 })).type.toRaiseError();
    expect(app.register(fastifySpiffe, { jwt: { bundles } })).type.toRaiseError();
    expect(app.register(fastifySpiffe, { jwt: { bundles, audience: 'orders', allow: [42] } })).type.toRaiseError();
  });

  test('route config', () => {
    const app = Fastify();
    expect(
      app.get('/a', { config: { spiffe: { allow: ['spiffe://example.org/a'], jwt: false } } }, async () => ({})),
    ).type.not.toRaiseError();
    expect(app.get('/a', { config: { spiffe: { allow: 42 } } }, async () => ({}))).type.toRaiseError();
  });
});

describe('@spiffe-ts/express', () => {
  test('req.spiffeId and req.jwtSvid (declaration merging)', () => {
    expect<Request['spiffeId']>().type.toBe<SpiffeId | undefined>();
    expect<Request['jwtSvid']>().type.toBe<JwtSvid | undefined>();
    const handler: RequestHandler = (req, res) => {
      expect(req.spiffeId).type.toBe<SpiffeId | undefined>();
      expect(req.jwtSvid).type.toBe<JwtSvid | undefined>();
      res.end();
    };
    expect(handler).type.toBe<RequestHandler>();
  });

  test('middleware options', () => {
    expect(jwtSvid({ bundles, audience: 'orders', allow: 'spiffe://example.org/a' })).type.toBe<RequestHandler>();
    expect(jwtSvid).type.not.toBeCallableWith({ bundles });
    expect(jwtSvid).type.not.toBeCallableWith({ bundles, audience: 'orders', allow: 42 });
    expect(requirePeer(['spiffe://example.org/a', { trustDomain: 'example.org' }])).type.toBe<RequestHandler>();
    expect(requirePeer).type.not.toBeCallableWith(42);
    expect(allowSpiffeIds).type.toBeCallableWith('spiffe://example.org/a', 'spiffe://example.org/b');
    expect(allowSpiffeIds).type.not.toBeCallableWith(42);
  });
});

describe('@spiffe-ts/nestjs', () => {
  test('param decorators', () => {
    expect(PeerSpiffeId()).type.toBe<ParameterDecorator>();
    expect(BearerJwtSvid()).type.toBe<ParameterDecorator>();
    class OrdersController {
      list(@PeerSpiffeId() caller: SpiffeId | undefined, @BearerJwtSvid() token: JwtSvid | undefined) {
        return { caller, token };
      }
    }
    expect<ReturnType<OrdersController['list']>>().type.toBe<{
      caller: SpiffeId | undefined;
      token: JwtSvid | undefined;
    }>();
  });

  test('guard decorators', () => {
    expect(AllowSpiffeIds('spiffe://example.org/a', { trustDomain: 'example.org' })).type.toBe<
      ClassDecorator & MethodDecorator
    >();
    expect(AllowSpiffeIds).type.not.toBeCallableWith(42);
    expect(AllowTrustDomain).type.toBeCallableWith('example.org');
    expect(AllowTrustDomain).type.not.toBeCallableWith({ trustDomain: 'example.org' });
    expect(RequireJwtSvid).type.toBeCallableWith({ audience: 'orders', allow: 'spiffe://example.org/a' });
    expect(RequireJwtSvid).type.not.toBeCallableWith({ audience: 42 });
    expect(RequireJwtSvid).type.not.toBeCallableWith({ allow: 42 });
  });
});

describe('@spiffe-ts/grpc', () => {
  test('peerSpiffeIdOf(call) and jwtSvidOf(call)', () => {
    const unary = {} as grpc.ServerUnaryCall<unknown, unknown>;
    const stream = {} as grpc.ServerDuplexStream<unknown, unknown>;
    expect(peerSpiffeIdOf(unary)).type.toBe<SpiffeId | undefined>();
    expect(peerSpiffeIdOf(stream)).type.toBe<SpiffeId | undefined>();
    expect(spiffeIdOf(unary)).type.toBe<SpiffeId | undefined>();
    expect(jwtSvidOf(unary)).type.toBe<JwtSvid | undefined>();
    expect(peerSpiffeIdOf).type.not.toBeCallableWith({});
    expect(peerSpiffeIdOf).type.not.toBeCallableWith('call');
  });

  test('interceptor options', () => {
    expect(spiffeAuthorization({ allow: 'spiffe://example.org/a' })).type.toBe<grpc.ServerInterceptor>();
    expect(spiffeAuthorization).type.not.toBeCallableWith({ allow: 42 });
  });
});
