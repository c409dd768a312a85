// XFCC (x-forwarded-client-cert) parsing, the trusted-proxy decision, and JWT-SVIDs bound to the peer.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { before, describe, test } from 'node:test';
import {
  authenticateBearer,
  decideRequestPeer,
  forwardedSpiffeId,
  isLocalSocket,
  JwtBundleSet,
  MAX_XFCC_ELEMENTS,
  MAX_XFCC_LENGTH,
  parseXfcc,
  resolveRequestPeer,
  SpiffeId,
  toMatcher,
  trustedProxy,
  XfccError,
} from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';

// Recorded in the format of Envoy's documentation for x-forwarded-client-cert (no Envoy binary is available
// from the package registries this project uses), with SPIFFE URIs as an Istio sidecar sends them.
const HASH = '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688';
const ENVOY_DOC =
  'By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;' +
  'Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com';
const ISTIO =
  'By=spiffe://cluster.local/ns/default/sa/backend;Hash=' +
  HASH +
  ';Subject="";URI=spiffe://cluster.local/ns/default/sa/frontend';
const TWO_HOPS =
  `By=spiffe://cluster.local/ns/edge/sa/gateway;Hash=${HASH};URI=spiffe://cluster.local/ns/ext/sa/client,` +
  `By=spiffe://cluster.local/ns/default/sa/backend;Hash=${HASH};Subject="/CN=x, y; z=\\"q\\"";URI=spiffe://cluster.local/ns/default/sa/frontend;DNS=a.example;DNS=b.example`;

describe('parseXfcc', () => {
  test("Envoy's documented examples parse", () => {
    assert.deepEqual(parseXfcc(ENVOY_DOC), [
      {
        by: 'http://frontend.lyft.com',
        hash: HASH,
        subject: '/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client',
        uri: ['http://testclient.lyft.com'],
        dns: [],
      },
    ]);
    const two = parseXfcc(TWO_HOPS);
    assert.equal(two.length, 2);
    assert.equal(two[1]?.subject, '/CN=x, y; z="q"');
    assert.deepEqual(two[1]?.dns, ['a.example', 'b.example']);
    assert.equal(parseXfcc(ISTIO)[0]?.subject, '');
    // Keys are case-insensitive; joined duplicate headers have ", " between elements.
    assert.equal(parseXfcc(`uri=spiffe://a/b, URI=spiffe://c/d`)[1]?.uri[0], 'spiffe://c/d');
    const cert = parseXfcc(
      'Cert="-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A";URI=spiffe://a/b',
    );
    assert.equal(cert[0]?.cert, '-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A');
  });

  test('malformed values throw XfccError XFCC_MALFORMED', () => {
    const bad = [
      '',
      'URI',
      'URI=',
      'URI=;',
      '=x',
      'Foo=bar',
      'URI=spiffe://a/b;',
      'URI=spiffe://a/b,',
      ',URI=spiffe://a/b',
      'URI=spiffe://a/b,,URI=spiffe://a/c',
      'URI="spiffe://a/b',
      'URI="a\\',
      'URI=a"b',
      'URI=a b',
      'URI=a\u0000',
      'Subject="a\nb";URI=spiffe://a/b',
      'URI=spiffe://a/é',
      'By=a;By=b;URI=spiffe://a/b',
      'Hash=abc;URI=spiffe://a/b',
      'URI=spiffe://a/b;;URI=x',
      'URI=spiffe://a/b URI=x',
      'URI=a=b',
      ' URI=spiffe://a/b',
      'URI=spiffe://a/b ;DNS=x',
      'URI=spiffe://a/b ',
      'URI=spiffe://a/b\t',
    ];
    for (const v of bad) {
      assert.throws(
        () => parseXfcc(v),
        (e: unknown) => e instanceof XfccError && e.code === 'XFCC_MALFORMED',
        JSON.stringify(v),
      );
    }
  });

  test('size and element count are bounded', () => {
    const el = 'URI=spiffe://a/b';
    assert.equal(parseXfcc(Array(MAX_XFCC_ELEMENTS).fill(el).join(',')).length, MAX_XFCC_ELEMENTS);
    assert.throws(
      () =>
        parseXfcc(
          Array(MAX_XFCC_ELEMENTS + 1)
            .fill(el)
            .join(','),
        ),
      XfccError,
    );
    assert.throws(() => parseXfcc(`Subject="${'a'.repeat(MAX_XFCC_LENGTH)}";${el}`), XfccError);
  });
});

describe('forwardedSpiffeId', () => {
  test('takes the last element (added by the nearest proxy)', () => {
    assert.equal(forwardedSpiffeId(TWO_HOPS).id.toString(), 'spiffe://cluster.local/ns/default/sa/frontend');
    assert.equal(forwardedSpiffeId([ISTIO, 'URI=spiffe://x.org/last']).id.toString(), 'spiffe://x.org/last');
  });
  test('the nearest element must hold exactly one URI that is a valid SPIFFE ID', () => {
    for (const v of [
      ENVOY_DOC,
      'DNS=a.example',
      'URI=spiffe://a/b;URI=spiffe://a/c',
      'URI=spiffe://A/b',
      'URI=spiffe://a/b/',
      'URI=spiffe://a/b,DNS=x',
    ]) {
      assert.throws(() => forwardedSpiffeId(v), XfccError, v);
    }
  });
});

describe('isLocalSocket', () => {
  test('loopback TCP and unix sockets are local; other or dead sockets are not', async () => {
    const seen: boolean[] = [];
    const server = net.createServer((s) => {
      seen.push(isLocalSocket(s));
      s.destroy();
      assert.equal(isLocalSocket(s), false, 'a destroyed socket is never local');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) =>
      net
        .connect(port, '127.0.0.1')
        .on('close', () => r())
        .on('error', () => {}),
    );
    server.close();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xfcc-'));
    const sock = path.join(dir, 's');
    const unix = net.createServer((s) => {
      seen.push(isLocalSocket(s));
      s.destroy();
    });
    await new Promise<void>((r) => unix.listen(sock, r));
    await new Promise<void>((r) =>
      net
        .connect(sock)
        .on('close', () => r())
        .on('error', () => {}),
    );
    unix.close();
    fs.rmSync(dir, { recursive: true });
    assert.deepEqual(seen, [true, true]);
    const remote = { destroyed: false, readyState: 'open', remoteAddress: '203.0.113.7', localAddress: '10.0.0.1' };
    assert.equal(isLocalSocket(remote as unknown as net.Socket), false);
    const mapped = { destroyed: false, readyState: 'open', remoteAddress: '::ffff:127.0.0.1' };
    assert.equal(isLocalSocket(mapped as unknown as net.Socket), true);
    const v6 = { destroyed: false, readyState: 'open', remoteAddress: '::2' };
    assert.equal(isLocalSocket(v6 as unknown as net.Socket), false);
    // A TCP socket whose peer vanished: no remote address, but a local one: not local.
    const gone = { destroyed: false, readyState: 'open', remoteAddress: undefined, localAddress: '10.0.0.1' };
    assert.equal(isLocalSocket(gone as unknown as net.Socket), false);
    assert.equal(isLocalSocket(new net.Socket()), false, 'an unconnected socket is not local');
  });
});

describe('resolveRequestPeer', () => {
  const local = { destroyed: false, readyState: 'open', remoteAddress: '127.0.0.1' } as unknown as net.Socket;
  const remote = { destroyed: false, readyState: 'open', remoteAddress: '198.51.100.1' } as unknown as net.Socket;
  const sidecar = trustedProxy({ localSidecar: true });
  const allow = toMatcher({ trustDomain: 'cluster.local', path: '/ns/*/sa/frontend' });

  test('without the option the header is never read', () => {
    const d = resolveRequestPeer(local, ISTIO, { allow });
    assert.equal(d.ok, false);
    assert.equal(d.ok ? undefined : d.error.code, 'PEER_NOT_VERIFIED');
    assert.deepEqual(resolveRequestPeer(local, ISTIO, {}), { ok: true, id: undefined, source: undefined });
  });
  test('a local sidecar forwards the ID, checked against the same allowlist', () => {
    const d = resolveRequestPeer(local, ISTIO, { allow, proxy: sidecar });
    assert.equal(d.ok, true);
    assert.equal(d.id?.toString(), 'spiffe://cluster.local/ns/default/sa/frontend');
    assert.equal(d.source, 'proxy');
    const denied = resolveRequestPeer(local, 'URI=spiffe://cluster.local/ns/default/sa/other', {
      allow,
      proxy: sidecar,
    });
    assert.equal(denied.ok ? undefined : denied.error.code, 'UNAUTHORIZED_SPIFFE_ID');
    assert.equal(denied.source, 'proxy');
  });
  test('a direct (remote) client sending XFCC is refused even where no allowlist applies', () => {
    for (const opts of [{ allow, proxy: sidecar }, { proxy: sidecar }]) {
      const d = resolveRequestPeer(remote, ISTIO, opts);
      assert.equal(d.ok, false);
      assert.equal(d.ok ? undefined : d.error.code, 'XFCC_UNTRUSTED_PEER');
      assert.equal(d.ok ? undefined : d.error.statusCode, 403);
      assert.equal(d.id, undefined, 'the forwarded ID is never exposed');
    }
  });
  test('malformed and empty headers from a trusted proxy are refused', () => {
    for (const h of ['URI=spiffe://cluster.local/a;', '', [], ENVOY_DOC, `${ISTIO},Foo=x`]) {
      const d = resolveRequestPeer(local, h, { proxy: sidecar });
      if (Array.isArray(h) && h.length === 0) {
        assert.equal(d.ok, true, 'no metadata values is no header');
        continue;
      }
      assert.equal(d.ok ? undefined : d.error.code, 'XFCC_MALFORMED', JSON.stringify(h));
    }
  });
  test('without the header the connection identity is used', () => {
    const d = resolveRequestPeer(local, undefined, { allow, proxy: sidecar });
    assert.equal(d.ok ? undefined : d.error.code, 'PEER_NOT_VERIFIED');
  });
  test('bad trustedProxy options throw at start-up', () => {
    assert.throws(() => trustedProxy({}), TypeError);
    assert.throws(() => trustedProxy({ localSidecar: 'yes' as never }), TypeError);
    assert.throws(() => trustedProxy({ localSidecar: true, header: 'bad header' }), TypeError);
    assert.throws(() => trustedProxy({ ids: ['spiffe://bad domain/x'] }));
    assert.equal(trustedProxy({ ids: 'spiffe://a.org/envoy', header: 'X-Client-Cert' }).header, 'x-client-cert');
  });
});

describe('decideRequestPeer: proxies identified by SPIFFE ID', () => {
  const PROXY = 'spiffe://cluster.local/ns/default/sa/backend';
  const conn = (id: string | undefined, local = false) => ({
    id: id === undefined ? undefined : SpiffeId.parse(id),
    isLocal: () => local,
  });
  const byId = trustedProxy({ ids: [PROXY] });
  const strict = trustedProxy({ ids: [PROXY], requireBy: true });
  const code = (d: ReturnType<typeof decideRequestPeer>) => (d.ok ? 'ok' : d.error.code);

  test('only a listed, verified proxy may forward; a listed ID over loopback is not needed', () => {
    assert.equal(code(decideRequestPeer(conn(PROXY), ISTIO, { proxy: byId })), 'ok');
    assert.equal(decideRequestPeer(conn(PROXY), ISTIO, { proxy: byId }).source, 'proxy');
    assert.equal(
      code(decideRequestPeer(conn('spiffe://cluster.local/ns/x/sa/y'), ISTIO, { proxy: byId })),
      'XFCC_UNTRUSTED_PEER',
    );
    // A local connection is not enough without localSidecar.
    assert.equal(code(decideRequestPeer(conn(undefined, true), ISTIO, { proxy: byId })), 'XFCC_UNTRUSTED_PEER');
  });
  test("requireBy: the element's By must be the proxy's own verified ID", () => {
    assert.equal(code(decideRequestPeer(conn(PROXY), ISTIO, { proxy: strict })), 'ok');
    const otherBy = ISTIO.replace('sa/backend', 'sa/other');
    assert.equal(code(decideRequestPeer(conn(PROXY), otherBy, { proxy: strict })), 'XFCC_UNTRUSTED_PEER');
    const noBy = 'URI=spiffe://cluster.local/ns/default/sa/frontend';
    assert.equal(code(decideRequestPeer(conn(PROXY), noBy, { proxy: strict })), 'XFCC_UNTRUSTED_PEER');
    const sidecarStrict = trustedProxy({ localSidecar: true, requireBy: true });
    assert.equal(
      code(decideRequestPeer(conn(undefined, true), ISTIO, { proxy: sidecarStrict })),
      'XFCC_UNTRUSTED_PEER',
    );
  });
  test('a TrustedProxy that was not built by trustedProxy() is refused', () => {
    const fake = Object.create(Object.getPrototypeOf(byId), { header: { value: 'x-forwarded-client-cert' } });
    assert.throws(() => decideRequestPeer(conn(PROXY), ISTIO, { proxy: fake }), TypeError);
  });
});

describe('authenticateBearer with bindToPeer', () => {
  const AUD = 'spiffe://example.org/api';
  const SUB = 'spiffe://example.org/client';
  let ca: DevCa;
  let bundles: JwtBundleSet;
  let token: string;
  before(async () => {
    ca = await DevCa.create({ trustDomain: 'example.org' });
    bundles = new JwtBundleSet([ca.jwtBundle()]);
    token = (await ca.issueJwtSvid(SUB, [AUD])).token;
  });
  const run = (bindToPeer: unknown, peer?: string) =>
    authenticateBearer(`Bearer ${token}`, {
      bundles,
      audience: AUD,
      bindToPeer: bindToPeer as never,
      peer: peer === undefined ? undefined : SpiffeId.parse(peer),
    });

  test('true: the subject must equal the verified peer', async () => {
    assert.equal((await run(true, SUB)).ok, true);
    for (const peer of ['spiffe://example.org/other', undefined]) {
      const d = await run(true, peer);
      assert.equal(d.ok, false);
      if (d.ok) return;
      assert.equal(d.error.code, 'JWTSVID_NOT_BOUND_TO_PEER');
      assert.equal(d.error.statusCode, 401);
      assert.equal(d.error.headers['WWW-Authenticate'], 'Bearer realm="spiffe", error="invalid_token"');
      assert.equal(d.error.subject?.toString(), SUB);
    }
  });
  test('a relation decides; anything but true, or a throw, is unbound', async () => {
    const sameTd = (s: SpiffeId, p: SpiffeId) => s.trustDomain.equals(p.trustDomain);
    assert.equal((await run(sameTd, 'spiffe://example.org/x')).ok, true);
    assert.equal((await run(sameTd, 'spiffe://other.org/x')).ok, false);
    assert.equal((await run(() => 'yes', SUB)).ok, false);
    assert.equal(
      (
        await run(() => {
          throw new Error('boom');
        }, SUB)
      ).ok,
      false,
    );
    assert.equal((await run(false, 'spiffe://other.org/x')).ok, true, 'false leaves tokens unbound');
  });
});
