// The Workload API transport's HTTP/2 connection against a scripted peer on a real unix socket: the test plays
// the server frame by frame, for what real servers send only sometimes (CONTINUATION, padding, small windows,
// GOAWAY, PING, stream limits) and for what they must never send (oversized frames, push, unknown streams).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { H2Code, Http2Connection, type StreamEvents } from '../src/workloadapi/h2.js';
import { encodeLiterals, HpackDecoder } from '../src/workloadapi/hpack.js';

type Frame = { type: number; flags: number; id: number; payload: Buffer };
const [DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION] = [
  0, 1, 3, 4, 5, 6, 7, 8, 9,
];

function frame(type: number, flags: number, id: number, payload: Buffer | number[] = []): Buffer {
  const p = Buffer.from(payload);
  const h = Buffer.alloc(9);
  h.writeUIntBE(p.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(id, 5);
  return Buffer.concat([h, p]);
}
const u32 = (n: number) => [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const setting = (key: number, value: number) => [key >> 8, key & 0xff, ...u32(value)];
const SERVER_SETTINGS = frame(SETTINGS, 0, 0);
const OK = encodeLiterals([
  [':status', '200'],
  ['content-type', 'application/grpc'],
]);
const STATUS_OK = encodeLiterals([['grpc-status', '0']]);
const STATUS_200 = encodeLiterals([[':status', '200']]);

/** One accepted connection, seen from the server side. */
class Peer {
  readonly frames: Frame[] = [];
  readonly #waiters: (() => void)[] = [];
  #buf = Buffer.alloc(0);
  #prefaceSeen = false;
  closed = false;
  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      if (!this.#prefaceSeen) {
        if (this.#buf.length < 24) return;
        assert.equal(this.#buf.subarray(0, 24).toString('latin1'), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
        this.#buf = this.#buf.subarray(24);
        this.#prefaceSeen = true;
      }
      while (this.#buf.length >= 9) {
        const len = this.#buf.readUIntBE(0, 3);
        if (this.#buf.length < 9 + len) break;
        this.frames.push({
          type: this.#buf[3] as number,
          flags: this.#buf[4] as number,
          id: this.#buf.readUInt32BE(5),
          payload: Buffer.from(this.#buf.subarray(9, 9 + len)),
        });
        this.#buf = this.#buf.subarray(9 + len);
      }
      for (const w of this.#waiters.splice(0)) w();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.#waiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }
  /** Asserts that no frame of `type` arrives within `ms` (beyond those already taken). */
  async expectNone(type: number, ms: number, message: string): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    assert.equal(
      this.frames.some((f) => f.type === type),
      false,
      message,
    );
  }
  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }
  /** Waits for a frame (received from now or earlier, not yet taken) matching `match`, and takes it. */
  async take(match: (f: Frame) => boolean, what: string): Promise<Frame> {
    for (;;) {
      const i = this.frames.findIndex(match);
      if (i >= 0) return this.frames.splice(i, 1)[0] as Frame;
      if (this.closed) throw new Error(`connection closed before ${what}`);
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }
}

/** Records what one stream saw. */
function recorder() {
  const headers: [string, string][][] = [];
  const data: Buffer[] = [];
  let ended: string | undefined;
  let resolve: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolve = r;
  });
  const events: StreamEvents = {
    onHeaders(fields, endStream) {
      headers.push(fields);
      if (endStream) {
        ended = 'end';
        resolve();
      }
    },
    onData(chunk, endStream) {
      data.push(Buffer.from(chunk));
      if (endStream) {
        ended = 'end';
        resolve();
      }
    },
    onAbort(message, connectionLost) {
      ended = `abort: ${message} (${connectionLost ? 'lost' : 'not connected'})`;
      resolve();
    },
  };
  return {
    events,
    headers,
    data,
    done,
    get ended() {
      return ended;
    },
  };
}

describe('HTTP/2 connection (scripted server)', () => {
  let dir: string;
  let server: net.Server;
  let path: string;
  let peers: Peer[] = [];
  const connections: Http2Connection[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spiffe-h2-'));
    path = join(dir, 'h2.sock');
    server = net.createServer((s) => peers.push(new Peer(s)));
    await new Promise<void>((r) => server.listen(path, r));
  });
  after(async () => {
    for (const c of connections) c.destroy('test over');
    for (const p of peers) p.socket.destroy();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  let gone = 0;
  const connect = () => {
    const c = new Http2Connection(() => net.connect(path), { onGone: () => gone++, onClosed: () => {} });
    connections.push(c);
    return c;
  };
  const peer = async (n: number): Promise<Peer> => {
    while (peers.length < n) await new Promise((r) => setTimeout(r, 2));
    return peers[n - 1] as Peer;
  };
  const request = (c: Http2Connection, body = Buffer.from('hello')) => {
    const r = recorder();
    const cancel = c.request(encodeLiterals([[':path', '/x']]), body, r.events);
    return Object.assign(r, { cancel });
  };

  test('opens with the preface, SETTINGS (push off, our window) and a connection WINDOW_UPDATE; streams wait for the server SETTINGS', async () => {
    peers = [];
    const c = connect();
    const r = request(c);
    const p = await peer(1);
    await p.expectNone(HEADERS, 30, 'no stream before the server preface');
    p.send(SERVER_SETTINGS);
    const settings = await p.take((f) => f.type === SETTINGS, 'SETTINGS');
    const values = new Map<number, number>();
    for (let i = 0; i < settings.payload.length; i += 6) {
      values.set(settings.payload.readUInt16BE(i), settings.payload.readUInt32BE(i + 2));
    }
    assert.equal(values.get(2), 0, 'ENABLE_PUSH 0');
    const window = values.get(4) as number;
    assert.ok(window >= 1 << 20, 'a stream window that does not stall responses');
    const wu = await p.take((f) => f.type === WINDOW_UPDATE && f.id === 0, 'connection WINDOW_UPDATE');
    assert.equal(wu.payload.readUInt32BE(0) + 65_535, window);
    const h = await p.take((f) => f.type === HEADERS, 'HEADERS');
    assert.equal(h.id, 1);
    assert.equal(h.flags & 0x4, 0x4, 'END_HEADERS');
    assert.deepEqual(new HpackDecoder().decode(h.payload), [[':path', '/x']]);
    const d = await p.take((f) => f.type === DATA, 'DATA');
    assert.equal(d.flags & 0x1, 0x1, 'END_STREAM with the request body');
    assert.equal(d.payload.toString(), 'hello');
    // Our SETTINGS are acknowledged by the server; the server's are acknowledged by us.
    p.send(frame(SETTINGS, 1, 0), frame(HEADERS, 0x4, 1, OK), frame(DATA, 0, 1, [1, 2, 3]));
    p.send(frame(HEADERS, 0x5, 1, STATUS_OK));
    await r.done;
    assert.equal(r.ended, 'end');
    assert.deepEqual(r.headers, [
      [
        [':status', '200'],
        ['content-type', 'application/grpc'],
      ],
      [['grpc-status', '0']],
    ]);
    assert.deepEqual(Buffer.concat(r.data), Buffer.from([1, 2, 3]));
    await p.take((f) => f.type === SETTINGS && f.flags === 1, 'SETTINGS ACK');
  });

  test('padded and prioritised HEADERS, CONTINUATION and padded DATA are read as their content', async () => {
    peers = [];
    const c = connect();
    const r = request(c);
    const p = await peer(1);
    p.send(SERVER_SETTINGS);
    await p.take((f) => f.type === DATA, 'request');
    const block = encodeLiterals([
      [':status', '200'],
      ['content-type', 'application/grpc'],
      ['x-long', 'z'.repeat(100)],
    ]);
    // HEADERS: PADDED (3 bytes of padding) + PRIORITY (5 bytes), first 10 octets of the block; the rest in two
    // CONTINUATIONs.
    const first = Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 16]), block.subarray(0, 10), Buffer.alloc(3)]);
    p.send(
      frame(HEADERS, 0x8 | 0x20, 1, first),
      frame(CONTINUATION, 0, 1, block.subarray(10, 50)),
      frame(CONTINUATION, 0x4, 1, block.subarray(50)),
      frame(DATA, 0x8, 1, Buffer.from([4, 9, 9, 0, 0, 0, 0])), // 2 data octets, 4 of padding
    );
    p.send(frame(HEADERS, 0x5, 1, STATUS_OK));
    await r.done;
    assert.equal(r.ended, 'end');
    assert.equal(r.headers[0]?.[2]?.[1], 'z'.repeat(100));
    assert.deepEqual(Buffer.concat(r.data), Buffer.from([9, 9]));
  });

  test('answers PING with the same payload', async () => {
    peers = [];
    const c = connect();
    request(c);
    const p = await peer(1);
    p.send(SERVER_SETTINGS, frame(PING, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]));
    const ack = await p.take((f) => f.type === PING, 'PING ACK');
    assert.equal(ack.flags, 1);
    assert.deepEqual([...ack.payload], [1, 2, 3, 4, 5, 6, 7, 8]);
  });

  test('a small server window holds the request body back until WINDOW_UPDATE', async () => {
    peers = [];
    const c = connect();
    const p0 = peer(1);
    (await p0).send(frame(SETTINGS, 0, 0, setting(4, 3))); // INITIAL_WINDOW_SIZE 3
    await (await p0).take((f) => f.type === SETTINGS && f.flags === 0, 'our SETTINGS');
    await new Promise((r) => setTimeout(r, 20)); // let the client read the server's SETTINGS
    const r = request(c, Buffer.from('abcdefgh'));
    const p = await p0;
    const d1 = await p.take((f) => f.type === DATA, 'first DATA');
    assert.equal(d1.payload.toString(), 'abc');
    assert.equal(d1.flags & 1, 0, 'not the end yet');
    await p.expectNone(DATA, 30, 'nothing more until the window opens');
    p.send(frame(WINDOW_UPDATE, 0, 1, u32(100)));
    const d2 = await p.take((f) => f.type === DATA, 'rest of the body');
    assert.equal(d2.payload.toString(), 'defgh');
    assert.equal(d2.flags & 1, 1);
    p.send(frame(HEADERS, 0x5, 1, STATUS_200));
    await r.done;
    assert.equal(r.ended, 'end');
  });

  test('a large response is acknowledged with WINDOW_UPDATEs on the stream and the connection', async () => {
    peers = [];
    const c = connect();
    const r = request(c);
    const p = await peer(1);
    await p.take((f) => f.type === WINDOW_UPDATE && f.id === 0, 'the initial connection WINDOW_UPDATE');
    p.send(SERVER_SETTINGS);
    await p.take((f) => f.type === DATA, 'request');
    p.send(frame(HEADERS, 0x4, 1, OK));
    const chunk = Buffer.alloc(16_384, 7);
    const total = 9 * 1024 * 1024; // past half of our 16 MiB window
    for (let sent = 0; sent < total; sent += chunk.length) p.send(frame(DATA, 0, 1, chunk));
    const streamWu = await p.take((f) => f.type === WINDOW_UPDATE && f.id === 1, 'stream WINDOW_UPDATE');
    const connWu = await p.take((f) => f.type === WINDOW_UPDATE && f.id === 0, 'connection WINDOW_UPDATE');
    assert.ok(streamWu.payload.readUInt32BE(0) >= 8 * 1024 * 1024);
    assert.ok(connWu.payload.readUInt32BE(0) >= 8 * 1024 * 1024);
    p.send(frame(HEADERS, 0x5, 1, STATUS_OK));
    await r.done;
    assert.equal(
      r.data.reduce((n, b) => n + b.length, 0),
      total,
    );
  });

  test('MAX_CONCURRENT_STREAMS: a call over the limit waits for a stream to end, then opens', async () => {
    peers = [];
    const c = connect();
    const p = await peer(1);
    p.send(frame(SETTINGS, 0, 0, setting(3, 1)));
    await new Promise((r) => setTimeout(r, 20));
    const a = request(c);
    const b = request(c);
    await p.take((f) => f.type === HEADERS && f.id === 1, 'first stream');
    await p.expectNone(HEADERS, 20, 'the second waits');
    p.send(frame(HEADERS, 0x5, 1, STATUS_200));
    await a.done;
    await p.take((f) => f.type === HEADERS && f.id === 3, 'second stream, once the first ended');
    p.send(frame(HEADERS, 0x5, 3, STATUS_200));
    await b.done;
    assert.equal(b.ended, 'end');
  });

  test('a cancelled stream is reset before the waiting stream that takes its slot is opened', async () => {
    peers = [];
    const c = connect();
    const p = await peer(1);
    p.send(frame(SETTINGS, 0, 0, setting(3, 1)));
    const a = request(c);
    const b = request(c);
    await p.take((f) => f.type === HEADERS && f.id === 1, 'first stream');
    await p.take((f) => f.type === DATA && f.id === 1, 'its request');
    a.cancel();
    await p.take((f) => f.type === DATA && f.id === 3, 'second stream');
    const order = p.frames.filter((f) => f.type === RST_STREAM || f.type === HEADERS).map((f) => `${f.type}:${f.id}`);
    // A server reading HEADERS 3 before RST_STREAM 1 would see two streams open over a limit of one.
    assert.deepEqual(order, [`${RST_STREAM}:1`, `${HEADERS}:3`]);
    b.cancel();
  });

  test('GOAWAY: streams above its last ID are aborted as retryable, earlier ones finish, no new streams', async () => {
    peers = [];
    gone = 0;
    const c = connect();
    const a = request(c);
    const b = request(c);
    const p = await peer(1);
    p.send(SERVER_SETTINGS);
    await p.take((f) => f.type === HEADERS && f.id === 3, 'both streams');
    p.send(frame(GOAWAY, 0, 0, [...u32(1), ...u32(0)]));
    await b.done;
    assert.match(b.ended ?? '', /abort: .*GOAWAY.*\(lost\)/);
    assert.equal(gone, 1);
    assert.equal(c.usable, false);
    p.send(frame(HEADERS, 0x5, 1, STATUS_200));
    await a.done;
    assert.equal(a.ended, 'end');
    // With its last stream done, the connection closes.
    await p.take(() => false, 'close').catch(() => {});
    assert.equal(p.closed, true);
  });

  test('cancel resets an open stream with CANCEL; a stream the server ended is never reset', async () => {
    peers = [];
    const c = connect();
    const a = request(c);
    const p = await peer(1);
    p.send(SERVER_SETTINGS);
    await p.take((f) => f.type === DATA && f.id === 1, 'request');
    a.cancel();
    const rst = await p.take((f) => f.type === RST_STREAM, 'RST_STREAM');
    assert.equal(rst.id, 1);
    assert.equal(rst.payload.readUInt32BE(0), H2Code.CANCEL);
    const b = request(c);
    p.send(frame(HEADERS, 0x5, 3, STATUS_200));
    await b.done;
    b.cancel();
    const c2 = request(c); // a later stream, to know the reset would have been written by now
    await p.take((f) => f.type === DATA && f.id === 5, 'third request');
    await p.expectNone(RST_STREAM, 0, 'no reset of a stream the server ended');
    c2.cancel();
  });

  // `open`: the server sends its SETTINGS and reads our request first, then misbehaves.
  const protocolErrors: [string, (p: Peer) => void, number, RegExp, boolean][] = [
    ['a frame over our 16 KiB limit', (p) => p.send(frame(DATA, 0, 1, Buffer.alloc(16_385))), 0x6, /exceeds/, true],
    [
      'PUSH_PROMISE with push disabled',
      (p) => p.send(frame(PUSH_PROMISE, 0x4, 1, [0, 0, 0, 2])),
      0x1,
      /PUSH_PROMISE/,
      true,
    ],
    ['HEADERS on a stream never opened', (p) => p.send(frame(HEADERS, 0x4, 9, OK)), 0x1, /never opened/, true],
    ['a first frame that is not SETTINGS', (p) => p.send(frame(PING, 0, 0, Buffer.alloc(8))), 0x1, /SETTINGS/, false],
    ['an HTTP/1.1 answer', (p) => p.socket.write('HTTP/1.1 400 Bad Request\r\n\r\n'), 0x1, /not HTTP\/2/, false],
    ['an undecodable header block', (p) => p.send(frame(HEADERS, 0x4, 1, [0xbf])), 0x9, /not in the table/, true],
    [
      'a header block interrupted',
      (p) => p.send(frame(HEADERS, 0, 1, OK), frame(DATA, 0, 1)),
      0x1,
      /interrupted/,
      true,
    ],
    ['a window pushed past 2^31-1', (p) => p.send(frame(WINDOW_UPDATE, 0, 0, u32(2 ** 31 - 1))), 0x3, /overflow/, true],
  ];
  for (const [what, send, code, message, open] of protocolErrors) {
    test(`${what}: GOAWAY with the error code, the connection's streams aborted`, async () => {
      peers = [];
      const c = connect();
      const r = request(c);
      const p = await peer(1);
      if (open) {
        p.send(SERVER_SETTINGS);
        await p.take((f) => f.type === DATA, 'request');
      }
      send(p);
      const goaway = await p.take((f) => f.type === GOAWAY, 'GOAWAY');
      assert.equal(goaway.payload.readUInt32BE(4), code);
      await r.done;
      assert.match(r.ended ?? '', message);
      assert.match(r.ended ?? '', /\(lost\)/);
      assert.equal(c.usable, false);
    });
  }

  test('a listener that never sends SETTINGS: the connection gives up after the preface timeout', async () => {
    peers = [];
    const c = new Http2Connection(() => net.connect(path), { onGone: () => {}, onClosed: () => {} }, 100);
    connections.push(c);
    const r = recorder();
    const t0 = performance.now();
    c.request(encodeLiterals([[':path', '/x']]), Buffer.alloc(0), r.events);
    await r.done;
    assert.match(r.ended ?? '', /no HTTP\/2 SETTINGS from the server within 100 ms \(lost\)/);
    assert.ok(performance.now() - t0 >= 95);
    assert.equal((await peer(1)).frames.filter((f) => f.type === HEADERS).length, 0);
  });

  test('a server that is not there: streams abort as not connected', async () => {
    const c = new Http2Connection(() => net.connect(join(dir, 'nobody.sock')), {
      onGone: () => {},
      onClosed: () => {},
    });
    const r = recorder();
    c.request(encodeLiterals([[':path', '/x']]), Buffer.alloc(0), r.events);
    await r.done;
    assert.match(r.ended ?? '', /ENOENT.*\(not connected\)/);
  });
});
