// The one federation relationship each workload here is configured with. SPIFFE Federation wants its three
// parameters explicit (trust domain, endpoint URL, profile), so they come from the environment, as an operator
// would set them; the bootstrap bundle of the https_spiffe profile is a SPIFFE bundle file handed over out of band.
import { readFileSync } from 'node:fs';
import { FederatedBundleSource, SpiffeBundle } from '@spiffe-ts/core';

function need(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/**
 * Watches the bundle endpoint named by FEDERATED_TRUST_DOMAIN, FEDERATED_BUNDLE_ENDPOINT_URL,
 * FEDERATED_ENDPOINT_SPIFFE_ID and FEDERATED_BOOTSTRAP_BUNDLE (a SPIFFE bundle file), and waits for its
 * first bundle.
 */
export function federatedBundlesFromEnv(): Promise<FederatedBundleSource> {
  const trustDomain = need('FEDERATED_TRUST_DOMAIN');
  return FederatedBundleSource.create({
    relationships: [
      {
        trustDomain,
        url: need('FEDERATED_BUNDLE_ENDPOINT_URL'),
        profile: {
          type: 'https_spiffe',
          endpointSpiffeId: need('FEDERATED_ENDPOINT_SPIFFE_ID'),
          bundle: SpiffeBundle.parse(trustDomain, readFileSync(need('FEDERATED_BOOTSTRAP_BUNDLE'))),
        },
      },
    ],
    onError: (err, td) => console.error(`federation with ${td.name}: ${err.code}: ${err.message}`),
    timeoutMs: 15_000,
  });
}
