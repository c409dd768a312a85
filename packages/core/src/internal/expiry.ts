import { SourceError } from '../errors.js';
import { X509Svid } from '../svid/x509.js';

export function checkNotExpired(svid: X509Svid): X509Svid {
  if (svid.expiresAt.getTime() <= Date.now()) {
    throw new SourceError(
      'SOURCE_SVID_EXPIRED',
      `the X.509-SVID for ${svid.id} expired at ${svid.expiresAt.toISOString()}`,
    );
  }
  return svid;
}
