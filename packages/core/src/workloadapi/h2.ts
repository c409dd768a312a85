import net from 'node:net';
import { type HeaderList, HpackDecoder, HpackError } from './hpack.js';

/**
 * The client side of one plaintext HTTP/2 connection (RFC 9113), as much of it as gRPC calls to a local
 * Workload API use: streams opened by us, HEADERS/CONTINUATION decoded with HPACK, DATA with flow control
 * both ways, SETTINGS, PING, RST_STREAM, GOAWAY. No server push (disabled in our SETTINGS), no priorities.
 *
 * Why not node:http2: a Workload API call is a few hundred bytes each way on a local socket, and node:http2's
 * per-stream machinery (a Duplex stream per request, native nghttp2 callbacks, async-resource bookkeeping)
 * cost about a third of each call: 248 µs p50 per JWT-SVID fetch against the dev server, 157 µs with this
 * connection, measured side by side (bench/README.md).
 */

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** HTTP/2 error codes (RFC 9113 section 7). */
export const H2Code = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;
// Our receive window, per stream (SETTINGS_INITIAL_WINDOW_SIZE) and for the connection, topped up once half
// of it has been read: responses never wait on a WINDOW_UPDATE round trip.
const RECEIVE_WINDOW = 16 * 1024 * 1024;
// Our SETTINGS_MAX_FRAME_SIZE is the default; a larger frame is a FRAME_SIZE_ERROR, which bounds what one
// frame can make us buffer.
const MAX_FRAME_SIZE = 16_384;
// A header block (HEADERS plus CONTINUATIONs) beyond this is refused: gRPC headers are a few hundred bytes.
const MAX_HEADER_BLOCK = 64 * 1024;
const MAX_STREAM_ID = 2 ** 31 - 1;

/** What happens on a stream we opened. Exactly one of `endStream` (in onHeaders/onData) or onAbort ends it. */
export interface StreamEvents {
  /** Response headers, or trailers (the second block). */
  onHeaders(fields: HeaderList, endStream: boolean): void;
  onData(chunk: Buffer, endStream: boolean): void;
  /**
   * The stream ended without the server ending it: reset by the server, refused by GOAWAY, or the connection
   * failed. `connectionLost`: the connection had been established, so a retry on a new one should work.
   */
  onAbort(message: string, connectionLost: boolean): void;
}

export interface ConnectionOwner {
  /** The connection takes no new streams (GOAWAY, failure, close): later calls need a new one. */
  onGone(): void;
  /** The connection is closed and all its streams have ended. */
  onClosed(): void;
}

interface HeaderBlock {
  id: number;
  endStream: boolean;
  parts: Buffer[];
  size: number;
}

interface Stream {
  id: number; // 0 until it is opened (it may wait for MAX_CONCURRENT_STREAMS)
  readonly block: Buffer;
  body: Buffer | undefined; // request bytes not yet sent (flow control)
  sendWindow: number;
  receiveWindow: number;
  readonly events: StreamEvents;
}

function frameHeader(length: number, type: number, flags: number, id: number): Buffer {
  const b = Buffer.allocUnsafe(9);
  b.writeUIntBE(length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(id, 5);
  return b;
}

function u32Frame(type: number, id: number, value: number): Buffer {
  const b = frameHeader(4, type, 0, id);
  return Buffer.concat([b, Buffer.from([value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff])]);
}

class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export class Http2Connection {
  readonly #socket: net.Socket;
  readonly #decoder = new HpackDecoder();
  readonly #streams = new Map<number, Stream>();
  readonly #waiting: Stream[] = [];
  #nextId = 1;
  #connected = false;
  #sawSettings = false;
  #dead: string | undefined;
  #goingAway = false;
  #pending: Buffer | undefined; // bytes of a frame not fully read yet
  #headerBlock: HeaderBlock | undefined;
  #out: Buffer[] = [];
  #busy = false; // whether the socket is ref'd (open or waiting streams)
  #prefaceTimer: NodeJS.Timeout | undefined;
  // What the server allows us.
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = MAX_FRAME_SIZE;
  // No stream before the server's SETTINGS (its preface), as grpc-go waits for it: until then its stream limit
  // is unknown, and a burst of calls over it would be refused (a node:http2 server closes the connection
  // after 100 refusals). From the SETTINGS on: unlimited unless they say otherwise.
  #peerMaxStreams = 0;
  #sendWindow = DEFAULT_WINDOW;
  #receiveWindow = RECEIVE_WINDOW;
  readonly #owner: ConnectionOwner;

  /**
   * `connect` makes the socket (unix or TCP). `prefaceTimeoutMs`: how long to wait, from the start, for the
   * server's SETTINGS before giving up on the connection (grpc-go's connect timeout: 20 s). Streams wait for
   * them, and a watch has no deadline of its own: without this limit a listener that never speaks HTTP/2
   * would hold a watch forever instead of sending it back to retry.
   */
  constructor(connect: () => net.Socket, owner: ConnectionOwner, prefaceTimeoutMs = 20_000) {
    this.#owner = owner;
    const socket = connect();
    this.#socket = socket;
    socket.setNoDelay?.(true);
    socket.on('connect', () => {
      this.#connected = true;
    });
    this.#prefaceTimer = setTimeout(
      () => this.#fail(`no HTTP/2 SETTINGS from the server within ${prefaceTimeoutMs} ms`),
      prefaceTimeoutMs,
    );
    this.#prefaceTimer.unref();
    socket.on('data', (chunk: Buffer) => this.#read(chunk));
    socket.on('error', (err) => this.#fail(err.message));
    socket.on('close', () => this.#fail('connection closed'));
    socket.unref(); // an idle client must not keep the process alive; open streams ref it
    // The client preface, our SETTINGS (no push, our window) and the connection window, before any request.
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(0x2, 0); // ENABLE_PUSH
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(RECEIVE_WINDOW, 8);
    socket.write(
      Buffer.concat([
        PREFACE,
        frameHeader(settings.length, SETTINGS, 0, 0),
        settings,
        u32Frame(WINDOW_UPDATE, 0, RECEIVE_WINDOW - DEFAULT_WINDOW),
      ]),
    );
  }

  /** Whether new streams may be opened here. */
  get usable(): boolean {
    return this.#dead === undefined && !this.#goingAway;
  }

  /**
   * Opens a stream: `block` is the HPACK-encoded request headers, `body` the request bytes, sent with
   * END_STREAM. Returns the stream's cancel (RST_STREAM CANCEL unless the server has ended it).
   */
  request(block: Buffer, body: Buffer, events: StreamEvents): () => void {
    const stream: Stream = { id: 0, block, body, sendWindow: 0, receiveWindow: RECEIVE_WINDOW, events };
    if (!this.usable) {
      const lost = this.#connected;
      queueMicrotask(() => events.onAbort(this.#dead ?? 'connection is going away', lost));
      return () => {};
    }
    if (this.#streams.size < this.#peerMaxStreams) this.#open(stream);
    else this.#waiting.push(stream);
    this.#ref();
    this.#flush();
    return () => this.#cancel(stream);
  }

  /** Closes the connection; open streams are aborted with `reason`. */
  destroy(reason: string): void {
    this.#fail(reason);
  }

  #open(stream: Stream): void {
    if (this.#nextId > MAX_STREAM_ID) {
      // Stream IDs are spent: this connection is done, the next call opens another.
      this.#goAway();
      queueMicrotask(() => stream.events.onAbort('stream IDs exhausted on this connection', true));
      return;
    }
    stream.id = this.#nextId;
    this.#nextId += 2;
    stream.sendWindow = this.#peerInitialWindow;
    this.#streams.set(stream.id, stream);
    const { block } = stream;
    // HEADERS, then CONTINUATION frames if the block is larger than the server's frame size.
    let offset = 0;
    do {
      const part = block.subarray(offset, offset + this.#peerMaxFrame);
      const type = offset === 0 ? HEADERS : CONTINUATION;
      offset += part.length;
      this.#out.push(frameHeader(part.length, type, offset >= block.length ? FLAG_END_HEADERS : 0, stream.id), part);
    } while (offset < block.length);
    this.#sendBody(stream);
  }

  /** Sends as much of the stream's request body as the windows allow; END_STREAM with the last of it. */
  #sendBody(stream: Stream): void {
    let body = stream.body as Buffer;
    do {
      const n = Math.min(body.length, this.#sendWindow, stream.sendWindow, this.#peerMaxFrame);
      if (n <= 0 && body.length > 0) break;
      const last = n === body.length;
      this.#out.push(frameHeader(n, DATA, last ? FLAG_END_STREAM : 0, stream.id), body.subarray(0, n));
      this.#sendWindow -= n;
      stream.sendWindow -= n;
      body = body.subarray(n);
      if (last) {
        stream.body = undefined;
        return;
      }
    } while (body.length > 0);
    stream.body = body;
  }

  #cancel(stream: Stream): void {
    if (stream.id === 0) {
      const i = this.#waiting.indexOf(stream);
      if (i < 0) return;
      this.#waiting.splice(i, 1);
      this.#ref();
      return;
    }
    // Only a stream the server has not ended: resetting an ended stream is a protocol error to some servers
    // (node:http2 counts them as invalid frames and drops the connection after 1,000).
    if (this.#streams.get(stream.id) !== stream) return;
    // The reset goes out before any stream this frees a slot for: the server counts open streams in the
    // order it reads frames, and a new stream ahead of the reset would go over its limit.
    this.#out.push(u32Frame(RST_STREAM, stream.id, H2Code.CANCEL));
    this.#remove(stream);
    this.#flush();
  }

  #remove(stream: Stream): void {
    this.#streams.delete(stream.id);
    this.#openWaiting();
    this.#ref();
    if (this.#goingAway && this.#streams.size === 0) this.#socket.end();
  }

  /** Opens waiting streams while the server's limit allows. */
  #openWaiting(): void {
    while (this.#waiting.length > 0 && this.#streams.size < this.#peerMaxStreams && this.usable) {
      this.#open(this.#waiting.shift() as Stream);
    }
  }

  #ref(): void {
    // Only on a change, and never once the socket is closed: without a handle, net.Socket defers each
    // ref()/unref() to a 'connect' listener of its own, and those would pile up.
    const busy = this.#streams.size + this.#waiting.length > 0;
    if (busy === this.#busy || this.#dead !== undefined) return;
    this.#busy = busy;
    if (busy) this.#socket.ref();
    else this.#socket.unref();
  }

  #flush(): void {
    if (this.#out.length === 0 || this.#dead !== undefined) return;
    const out = this.#out.length === 1 ? (this.#out[0] as Buffer) : Buffer.concat(this.#out);
    this.#out = [];
    this.#socket.write(out);
  }

  #goAway(): void {
    if (this.#goingAway) return;
    this.#goingAway = true;
    this.#owner.onGone();
  }

  /** Ends the connection: every stream still open is aborted. `last`: a final frame for the server (GOAWAY). */
  #fail(message: string, last?: Buffer): void {
    if (this.#dead !== undefined) return;
    this.#dead = message;
    this.#out = [];
    clearTimeout(this.#prefaceTimer);
    if (last && this.#socket.writable) {
      // Flush the GOAWAY, then close; a server that does not close its side is cut off shortly after.
      this.#socket.end(last);
      setTimeout(() => this.#socket.destroy(), 1000).unref();
    } else {
      this.#socket.destroy();
    }
    this.#goAway();
    const lost = this.#connected;
    const streams = [...this.#streams.values(), ...this.#waiting];
    this.#streams.clear();
    this.#waiting.length = 0;
    for (const s of streams) s.events.onAbort(message, lost);
    this.#owner.onClosed();
  }

  #read(chunk: Buffer): void {
    const buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = undefined;
    let pos = 0;
    try {
      while (buf.length - pos >= 9 && this.#dead === undefined) {
        const length = buf.readUIntBE(pos, 3);
        if (!this.#sawSettings && buf[pos + 3] !== SETTINGS) {
          // Checked before the length: an HTTP/1.1 answer ("HTTP/1.1 400") would read as a huge frame.
          throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'the server did not start with SETTINGS (not HTTP/2?)');
        }
        if (length > MAX_FRAME_SIZE) {
          throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, `frame of ${length} bytes exceeds our limit`);
        }
        if (buf.length - pos < 9 + length) break;
        const type = buf[pos + 3] as number;
        const flags = buf[pos + 4] as number;
        const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
        const payload = buf.subarray(pos + 9, pos + 9 + length);
        pos += 9 + length;
        this.#frame(type, flags, id, payload);
      }
    } catch (err) {
      // Tell the server why, then drop the connection: every open stream fails and may be retried. Anything
      // else thrown here is our bug: it fails the connection too rather than the process.
      const protocol = err instanceof ConnectionError;
      const goaway = Buffer.alloc(8);
      goaway.writeUInt32BE(protocol ? err.code : H2Code.INTERNAL_ERROR, 4);
      this.#fail(
        protocol
          ? `HTTP/2 protocol error from the Workload API: ${err.message}`
          : `internal error reading the Workload API response: ${(err as Error).message}`,
        Buffer.concat([frameHeader(8, GOAWAY, 0, 0), goaway]),
      );
      return;
    }
    if (this.#dead !== undefined) return;
    if (pos < buf.length) this.#pending = pos === 0 ? buf : Buffer.from(buf.subarray(pos));
    this.#flush();
  }

  #frame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.#headerBlock && type !== CONTINUATION) {
      throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'header block interrupted by another frame');
    }
    switch (type) {
      case DATA:
        this.#data(flags, id, payload);
        return;
      case HEADERS: {
        if (id === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'HEADERS on stream 0');
        let start = 0;
        let end = payload.length;
        if (flags & FLAG_PADDED) {
          start = 1;
          end -= payload[0] ?? 0;
        }
        if (flags & FLAG_PRIORITY) start += 5;
        if (start > end) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'HEADERS padding exceeds the frame');
        const part = payload.subarray(start, end);
        this.#headerBlock = { id, endStream: (flags & FLAG_END_STREAM) !== 0, parts: [part], size: part.length };
        if (flags & FLAG_END_HEADERS) this.#endHeaderBlock();
        return;
      }
      case CONTINUATION: {
        const hb = this.#headerBlock;
        if (!hb || hb.id !== id) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'unexpected CONTINUATION');
        hb.parts.push(payload);
        hb.size += payload.length;
        if (hb.size > MAX_HEADER_BLOCK) throw new ConnectionError(H2Code.ENHANCE_YOUR_CALM, 'header block too large');
        if (flags & FLAG_END_HEADERS) this.#endHeaderBlock();
        return;
      }
      case PRIORITY:
        if (id === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        return;
      case RST_STREAM: {
        if (id === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (payload.length !== 4) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, 'RST_STREAM length');
        this.#checkKnown(id);
        const stream = this.#streams.get(id);
        if (!stream) return;
        this.#remove(stream);
        const code = payload.readUInt32BE(0);
        stream.events.onAbort(
          code === H2Code.REFUSED_STREAM ? 'stream refused' : `stream reset by the server (HTTP/2 code ${code})`,
          true,
        );
        return;
      }
      case SETTINGS:
        this.#settings(flags, id, payload);
        return;
      case PUSH_PROMISE:
        throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'PUSH_PROMISE, but push is disabled');
      case PING:
        if (id !== 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, 'PING length');
        if (!(flags & FLAG_ACK)) this.#out.push(frameHeader(8, PING, FLAG_ACK, 0), Buffer.from(payload));
        return;
      case GOAWAY: {
        if (id !== 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'GOAWAY on a stream');
        if (payload.length < 8) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, 'GOAWAY length');
        const lastId = payload.readUInt32BE(0) & 0x7fffffff;
        this.#goAway();
        // Streams above the last one the server processes were not processed: they may be retried anywhere.
        const refused = [...this.#streams.values(), ...this.#waiting].filter((s) => s.id === 0 || s.id > lastId);
        this.#waiting.length = 0;
        for (const s of refused) {
          this.#streams.delete(s.id);
          s.events.onAbort('connection going away (GOAWAY)', true);
        }
        this.#ref();
        if (this.#streams.size === 0) this.#socket.end();
        return;
      }
      case WINDOW_UPDATE: {
        if (payload.length !== 4) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, 'WINDOW_UPDATE length');
        const increment = payload.readUInt32BE(0) & 0x7fffffff;
        if (id === 0) {
          if (increment === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
          this.#sendWindow += increment;
          if (this.#sendWindow > MAX_WINDOW) throw new ConnectionError(H2Code.FLOW_CONTROL_ERROR, 'window overflow');
        } else {
          this.#checkKnown(id);
          const stream = this.#streams.get(id);
          if (!stream) return;
          stream.sendWindow += increment;
          if (increment === 0 || stream.sendWindow > MAX_WINDOW) {
            this.#resetByUs(stream, increment === 0 ? H2Code.PROTOCOL_ERROR : H2Code.FLOW_CONTROL_ERROR);
            return;
          }
        }
        this.#resumeBodies();
        return;
      }
      default:
        return; // unknown frame types are ignored (RFC 9113 4.1)
    }
  }

  /** A frame for a stream we never opened (the server cannot open streams: push is off). */
  #checkKnown(id: number): void {
    if (id >= this.#nextId || id % 2 === 0) {
      throw new ConnectionError(H2Code.PROTOCOL_ERROR, `frame for stream ${id}, which was never opened`);
    }
  }

  #resetByUs(stream: Stream, code: number): void {
    this.#out.push(u32Frame(RST_STREAM, stream.id, code));
    this.#remove(stream);
    stream.events.onAbort(`stream error from the Workload API (HTTP/2 code ${code})`, true);
  }

  #resumeBodies(): void {
    for (const s of this.#streams.values()) if (s.body) this.#sendBody(s);
  }

  #data(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'DATA on stream 0');
    this.#checkKnown(id);
    // The whole payload, padding included, counts against the windows (RFC 9113 6.9.1).
    this.#receiveWindow -= payload.length;
    if (this.#receiveWindow < 0) throw new ConnectionError(H2Code.FLOW_CONTROL_ERROR, 'connection window exceeded');
    if (this.#receiveWindow <= RECEIVE_WINDOW / 2) {
      this.#out.push(u32Frame(WINDOW_UPDATE, 0, RECEIVE_WINDOW - this.#receiveWindow));
      this.#receiveWindow = RECEIVE_WINDOW;
    }
    let data = payload;
    if (flags & FLAG_PADDED) {
      const pad = payload[0] ?? 0;
      if (payload.length === 0 || pad >= payload.length) {
        throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'DATA padding exceeds the frame');
      }
      data = payload.subarray(1, payload.length - pad);
    }
    const stream = this.#streams.get(id);
    if (!stream) return; // a stream we cancelled: its data may still be in flight
    stream.receiveWindow -= payload.length;
    if (stream.receiveWindow < 0) {
      this.#resetByUs(stream, H2Code.FLOW_CONTROL_ERROR);
      return;
    }
    const end = (flags & FLAG_END_STREAM) !== 0;
    if (end) {
      this.#endByServer(stream);
    } else if (stream.receiveWindow <= RECEIVE_WINDOW / 2) {
      this.#out.push(u32Frame(WINDOW_UPDATE, id, RECEIVE_WINDOW - stream.receiveWindow));
      stream.receiveWindow = RECEIVE_WINDOW;
    }
    stream.events.onData(data, end);
  }

  #endHeaderBlock(): void {
    const hb = this.#headerBlock as HeaderBlock;
    this.#headerBlock = undefined;
    const block = hb.parts.length === 1 ? (hb.parts[0] as Buffer) : Buffer.concat(hb.parts, hb.size);
    this.#checkKnown(hb.id);
    // Decoded even for a stream we no longer track: the dynamic table must follow every block.
    let fields: HeaderList;
    try {
      fields = this.#decoder.decode(block);
    } catch (err) {
      if (err instanceof HpackError) throw new ConnectionError(H2Code.COMPRESSION_ERROR, err.message);
      throw err;
    }
    const stream = this.#streams.get(hb.id);
    if (!stream) return;
    if (hb.endStream) this.#endByServer(stream);
    stream.events.onHeaders(fields, hb.endStream);
  }

  /** The server ended the stream. Our request is fully sent by then in practice; if not, stop sending it. */
  #endByServer(stream: Stream): void {
    if (stream.body) this.#out.push(u32Frame(RST_STREAM, stream.id, H2Code.NO_ERROR));
    this.#remove(stream);
  }

  #settings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & FLAG_ACK) {
      if (payload.length !== 0) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, 'SETTINGS length');
    if (!this.#sawSettings) {
      this.#peerMaxStreams = Number.POSITIVE_INFINITY; // the server's own, from here on
      clearTimeout(this.#prefaceTimer);
    }
    this.#sawSettings = true;
    for (let i = 0; i < payload.length; i += 6) {
      const key = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      switch (key) {
        case 0x3: // MAX_CONCURRENT_STREAMS
          this.#peerMaxStreams = value;
          break;
        case 0x4: {
          // INITIAL_WINDOW_SIZE: applies to open streams too, by the difference (6.9.2)
          if (value > MAX_WINDOW) throw new ConnectionError(H2Code.FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE too large');
          const delta = value - this.#peerInitialWindow;
          this.#peerInitialWindow = value;
          for (const s of this.#streams.values()) s.sendWindow += delta;
          break;
        }
        case 0x5: // MAX_FRAME_SIZE
          if (value < 16_384 || value > 16_777_215) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'MAX_FRAME_SIZE');
          this.#peerMaxFrame = value;
          break;
        case 0x2: // ENABLE_PUSH: only 0 or 1 are valid; a server's value means nothing to us
          if (value > 1) throw new ConnectionError(H2Code.PROTOCOL_ERROR, 'ENABLE_PUSH');
          break;
        default:
          break; // HEADER_TABLE_SIZE (our encoder never indexes), MAX_HEADER_LIST_SIZE, unknown settings
      }
    }
    this.#out.push(frameHeader(0, SETTINGS, FLAG_ACK, 0));
    this.#resumeBodies();
    this.#openWaiting();
  }
}
