// The TLS material run.ts and handshake-steps.ts both start from, made the same way so their handshake figures
// compare like with like.
import { DevCa } from '@spiffe-ts/dev-server';

/**
 * A dev CA for `example.org` (SVIDs valid a day, longer than any run), an X.509-SVID for each side of the
 * handshake, and the CA's X.509 bundle as concatenated PEM.
 */
export async function tlsMaterial(serverId: string, clientId: string) {
  const ca = await DevCa.create({ trustDomain: 'example.org', svidTtlSeconds: 86_400 });
  const serverSvid = await ca.issueX509Svid(serverId);
  const clientSvid = await ca.issueX509Svid(clientId);
  const bundlePem = ca
    .x509Bundle()
    .authorities.map((c) => c.toString())
    .join('');
  return { ca, serverSvid, clientSvid, bundlePem };
}
