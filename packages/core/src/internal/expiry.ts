import { SourceError } from '../errors.js';
import type { X509Svid } from '../svid/x509.js';

/** The SVID, unless it has expired (SOURCE_SVID_EXPIRED, with `detail` appended to the message): no source serves one. */
export function checkNotExpired(svid: X509Svid, detail = ''): X509Svid {
  if (svid.expiresAt.getTime() <= Date.now()) {
    throw new SourceError(
      'SOURCE_SVID_EXPIRED',
      `the X.509-SVID for ${svid.id} expired at ${svid.expiresAt.toISOString()}${detail}`,
    );
  }
  return svid;
}
