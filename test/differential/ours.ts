// Our verdict on each differential case, through @spiffe-ts/core's public API only. The canonical result
// strings are built the same way as in go/main.go so accepted cases can be compared field by field.
import {
  JwtBundle,
  JwtBundleSet,
  parseAndValidateJwtSvid,
  SpiffeBundle,
  SpiffeId,
  TrustDomain,
  verifyX509Svid,
  X509Bundle,
  X509BundleSet,
  X509Svid,
} from '@spiffe-ts/core';
import type { Case, Verdict } from './cases/types.js';

const der = (items: readonly string[]) => items.map((s) => new Uint8Array(Buffer.from(s, 'base64')));

async function judge(c: Case): Promise<string> {
  switch (c.kind) {
    case 'id': {
      const id = SpiffeId.parse(c.input as string);
      return `${id}|${id.trustDomain.name}|${id.path}`;
    }
    case 'td':
      return TrustDomain.parse(c.input as string).name;
    case 'segments':
      return SpiffeId.fromSegments(TrustDomain.parse(c.td as string), ...(c.segments ?? [])).toString();
    case 'path':
      return SpiffeId.fromPath(TrustDomain.parse(c.td as string), c.path as string).toString();
    case 'chain': {
      const bundles = new X509BundleSet(
        Object.entries(c.roots ?? {}).map(([td, roots]) => X509Bundle.parse(td, der(roots))),
      );
      const { id } = verifyX509Svid(der(c.chain ?? []), bundles, { now: new Date(c.now as string) });
      return id.toString();
    }
    case 'svid': {
      const svid = X509Svid.parse(der(c.chain ?? []), new Uint8Array(Buffer.from(c.key as string, 'base64')));
      return svid.id.toString();
    }
    case 'token': {
      const bundles = new JwtBundleSet(Object.entries(c.jwks ?? {}).map(([td, jwks]) => JwtBundle.parse(td, jwks)));
      const svid = await parseAndValidateJwtSvid(c.token as string, bundles, c.audience ?? []);
      const exp = Math.floor(svid.expiresAt.getTime() / 1000);
      return `${svid.id}|aud=${svid.audience.join(',')}|exp=${exp}`;
    }
    case 'bundle': {
      const b = SpiffeBundle.parse(c.td as string, c.doc as string);
      const kids = [...b.jwtAuthorities.keys()].sort();
      const seq = b.sequenceNumber === undefined ? '-' : b.sequenceNumber.toString();
      const hint = b.refreshHintSeconds === undefined ? '-' : String(b.refreshHintSeconds);
      return `x509=${b.x509Authorities.length}|jwt=${kids.join(',')}|seq=${seq}|hint=${hint}`;
    }
  }
}

/** Our verdict: accepted with the canonical result, or refused with the error's code and message. */
export async function ourVerdict(c: Case): Promise<Verdict> {
  try {
    return { id: c.id, ok: true, result: await judge(c) };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    // Only our typed errors are verdicts; anything else (a TypeError, a crash) is recorded as such.
    const typed = typeof e?.code === 'string' && /^[A-Z0-9_]+$/.test(e.code);
    return { id: c.id, ok: false, error: typed ? `${e.code}: ${e.message}` : `UNTYPED ${String(err)}` };
  }
}
