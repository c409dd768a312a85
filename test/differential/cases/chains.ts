// X.509-SVID cases: peer chains verified against X.509 bundles (x509svid.ParseAndVerify / verifyX509Svid at a
// fixed time) and own SVIDs parsed with their key (x509svid.ParseRaw / X509Svid.parse), one scenario per
// defect, each in several shapes (leaf signed by the root or through intermediates) and key types.

import type { KeyObject, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  type Authority,
  type CreateAuthorityOptions,
  createAuthority,
  type ExtraExtension,
  type IssueX509Options,
  issueX509SvidWith,
  type KeyType,
  KeyUsage,
} from '@spiffe-ts/dev-server';
import { type Case, Rng } from './types.js';

// The ASN.1 schema packages are dependencies of @spiffe-ts/core, not of this test package: load them from there.
type Asn1X509 = typeof import('../../../packages/core/node_modules/@peculiar/asn1-x509/build/types/index.js');
type Asn1Schema = typeof import('../../../packages/core/node_modules/@peculiar/asn1-schema/build/types/index.js');
const requireFromCore = createRequire(new URL('../../../packages/core/package.json', import.meta.url));
const asn1x509 = requireFromCore('@peculiar/asn1-x509') as Asn1X509;
const { AsnConvert } = requireFromCore('@peculiar/asn1-schema') as Asn1Schema;

/** Verification time of every chain case; validity windows are set around it. */
export const CHAIN_NOW = new Date('2026-06-01T00:00:00Z');
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const valid = { notBefore: new Date(CHAIN_NOW.getTime() - DAY), notAfter: new Date(CHAIN_NOW.getTime() + 30 * DAY) };

const TD = 'example.org';
const TD2 = 'other.test';

function nameConstraints(
  permitted: string[],
  excluded: string[],
  opts: { dns?: string; critical?: boolean } = {},
): ExtraExtension[] {
  const { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints, id_ce_nameConstraints } = asn1x509;
  const subtrees = (uris: string[]) =>
    uris.length === 0
      ? undefined
      : new GeneralSubtrees(
          uris.map((u) => new GeneralSubtree({ base: new GeneralName({ uniformResourceIdentifier: u }) })),
        );
  const nc = new NameConstraints({ permittedSubtrees: subtrees(permitted), excludedSubtrees: subtrees(excluded) });
  if (opts.dns) {
    nc.permittedSubtrees ??= new GeneralSubtrees();
    nc.permittedSubtrees.push(new GeneralSubtree({ base: new GeneralName({ dNSName: opts.dns }) }));
  }
  return [
    { oid: id_ce_nameConstraints, critical: opts.critical ?? true, value: new Uint8Array(AsnConvert.serialize(nc)) },
  ];
}

function sanExtension(uris: string[]): ExtraExtension {
  const { GeneralName, SubjectAlternativeName, id_ce_subjectAltName } = asn1x509;
  const san = new SubjectAlternativeName(uris.map((u) => new GeneralName({ uniformResourceIdentifier: u })));
  return { oid: id_ce_subjectAltName, critical: false, value: new Uint8Array(AsnConvert.serialize(san)) };
}

function policyExtension(critical: boolean): ExtraExtension {
  const { CertificatePolicies, PolicyInformation, id_ce_certificatePolicies } = asn1x509;
  const policies = new CertificatePolicies([new PolicyInformation({ policyIdentifier: '1.3.6.1.4.1.99999.1' })]);
  return { oid: id_ce_certificatePolicies, critical, value: new Uint8Array(AsnConvert.serialize(policies)) };
}

const UNKNOWN_EXT = (critical: boolean): ExtraExtension => ({
  oid: '1.3.6.1.4.1.99999.42',
  critical,
  value: new Uint8Array([0x05, 0x00]), // DER NULL
});

interface Shape {
  keyType: KeyType;
  /** Number of intermediates between the root and the leaf. */
  inters: number;
}

interface Built {
  chain: X509Certificate[];
  roots: Record<string, X509Certificate[]>;
  key?: KeyObject;
}

/** Knobs of one scenario: options for the root, each intermediate and the leaf, and the bundle. */
interface Plan {
  root?: CreateAuthorityOptions;
  inter?: CreateAuthorityOptions;
  /** Options of the intermediate right above the leaf only. */
  lastInter?: CreateAuthorityOptions;
  leaf?: IssueX509Options;
  id?: string;
  /** Trust domain whose bundle holds the root (default: the leaf's). */
  bundleTd?: string;
  /** Bundle holds nothing (the trust domain is known but empty). */
  emptyBundle?: boolean;
  noBundle?: boolean;
  /** Rearranges the presented chain (leaf first), e.g. to drop or reorder intermediates. */
  present?: (chain: X509Certificate[], extra: { stranger: Authority; root: Authority }) => X509Certificate[];
  /** Replaces the bundle's authorities. */
  bundle?: (root: Authority, extra: { stranger: Authority }) => X509Certificate[];
}

async function build(plan: Plan, shape: Shape): Promise<Built> {
  const root = await createAuthority({ keyType: shape.keyType, ...valid, ...plan.root });
  let signer = root;
  const inters: Authority[] = [];
  for (let i = 0; i < shape.inters; i++) {
    const last = i === shape.inters - 1;
    signer = await createAuthority({
      keyType: shape.keyType,
      ...valid,
      uri: `spiffe://${TD}`,
      ...plan.inter,
      ...(last ? plan.lastInter : {}),
      parent: signer,
    });
    inters.unshift(signer);
  }
  const svid = await issueX509SvidWith(signer, plan.id ?? `spiffe://${TD}/workload`, {
    keyType: shape.keyType,
    ...valid,
    ...plan.leaf,
  });
  // A CA of no trust domain, for scenarios that present or trust it.
  // (It takes the root's subject when the plan names one: a same-named CA with another key.)
  const stranger =
    plan.present || plan.bundle
      ? await createAuthority({ keyType: shape.keyType, ...valid, subject: plan.root?.subject })
      : root;
  let chain = [svid.leaf, ...inters.map((a) => a.certificate)];
  if (plan.present) chain = plan.present(chain, { stranger, root });
  const authorities = plan.bundle ? plan.bundle(root, { stranger }) : [root.certificate];
  const roots: Record<string, X509Certificate[]> = {};
  if (!plan.noBundle) roots[plan.bundleTd ?? TD] = plan.emptyBundle ? [] : authorities;
  return { chain, roots, key: svid.privateKey };
}

const past = (h: number) => new Date(CHAIN_NOW.getTime() - h * HOUR);
const future = (h: number) => new Date(CHAIN_NOW.getTime() + h * HOUR);
const KU = KeyUsage;
const LEAF_KU = KU.digitalSignature | KU.keyEncipherment | KU.keyAgreement;

/** Every scenario: class name, plan, and which shapes it runs in (default: all). */
const SCENARIOS: Array<[string, Plan, ((s: Shape) => boolean)?]> = [
  ['valid', {}],
  ['valid-dns-sans', { leaf: { dnsNames: ['a.example.org', 'b.example.org'] } }],
  ['valid-deep-path', { id: `spiffe://${TD}/ns/prod/sa/api-server_v1.2` }],
  ['valid-leaf-ku-digital-signature-only', { leaf: { keyUsage: KU.digitalSignature } }],
  ['valid-no-aki', { leaf: { authorityKeyId: null }, inter: { authorityKeyId: null } }],
  ['valid-ca-without-uri', { inter: { uri: null } }],
  ['valid-noncritical-unknown-extension', { leaf: { extraExtensions: [UNKNOWN_EXT(false)] } }],
  ['valid-root-sha1-self-signature', { root: { signatureHash: 'SHA-1' } }],
  ['root-path-len-2', { root: { pathLength: 2 } }],
  [
    'valid-intermediates-reversed',
    { present: (c) => [c[0] as X509Certificate, ...c.slice(1).reverse()] },
    (s) => s.inters >= 2,
  ],
  ['valid-extra-unrelated-cert', { present: (c, x) => [...c, x.stranger.certificate] }],
  ['valid-bundle-with-extra-roots', { bundle: (r, x) => [x.stranger.certificate, r.certificate] }],
  ['valid-root-is-intermediate-in-bundle', { bundle: (r) => [r.certificate] }],
  ['valid-other-trust-domain', { id: `spiffe://${TD2}/workload`, bundleTd: TD2 }],
  [
    'valid-noncritical-name-constraints',
    { inter: { extraExtensions: nameConstraints([`.${TD}`, TD], [], { critical: false }) } },
    (s) => s.inters > 0,
  ],
  ['leaf-expired', { leaf: { notBefore: past(48), notAfter: past(1) } }],
  ['leaf-not-yet-valid', { leaf: { notBefore: future(1), notAfter: future(48) } }],
  ['leaf-expired-long-ago', { leaf: { notBefore: past(24 * 400), notAfter: past(24 * 365) } }],
  ['root-expired', { root: { notBefore: past(24 * 10), notAfter: past(1) } }],
  ['root-not-yet-valid', { root: { notBefore: future(1), notAfter: future(24 * 10) } }],
  ['intermediate-expired', { inter: { notBefore: past(24 * 10), notAfter: past(1) } }, (s) => s.inters > 0],
  ['intermediate-not-yet-valid', { inter: { notBefore: future(1), notAfter: future(24 * 10) } }, (s) => s.inters > 0],
  ['wrong-trust-domain-bundle', { bundleTd: TD2 }],
  ['no-bundle', { noBundle: true }],
  ['empty-bundle', { emptyBundle: true }],
  ['bundle-holds-stranger-root', { bundle: (_r, x) => [x.stranger.certificate] }],
  ['id-of-other-trust-domain', { id: `spiffe://${TD2}/workload` }],
  ['leaf-is-ca', { leaf: { isCa: true } }],
  ['leaf-is-ca-with-cert-sign', { leaf: { isCa: true, keyUsage: LEAF_KU | KU.keyCertSign } }],
  ['leaf-missing-digital-signature', { leaf: { keyUsage: KU.keyEncipherment | KU.keyAgreement } }],
  ['leaf-no-key-usage', { leaf: { keyUsage: null } }],
  ['leaf-key-cert-sign', { leaf: { keyUsage: LEAF_KU | KU.keyCertSign } }],
  ['leaf-crl-sign', { leaf: { keyUsage: LEAF_KU | KU.cRLSign } }],
  ['two-uri-sans', { leaf: { uris: [`spiffe://${TD}/a`, `spiffe://${TD}/b`] } }],
  ['uri-san-spiffe-and-https', { leaf: { uris: [`spiffe://${TD}/a`, 'https://example.org/'] } }],
  ['no-uri-san', { leaf: { uris: [], dnsNames: ['workload.example.org'] } }],
  ['no-san-at-all', { leaf: { uris: [] } }],
  ['non-spiffe-uri', { leaf: { uris: [`https://${TD}/workload`] } }],
  ['sparfe-scheme', { leaf: { uris: [`sparfe://${TD}/workload`] } }],
  ['uppercase-scheme', { leaf: { uris: [`SPIFFE://${TD}/workload`] } }],
  ['uppercase-trust-domain', { leaf: { uris: [`spiffe://EXAMPLE.org/workload`] } }],
  ['id-with-port', { leaf: { uris: [`spiffe://${TD}:443/workload`] } }],
  ['id-with-userinfo', { leaf: { uris: [`spiffe://user@${TD}/workload`] } }],
  ['id-with-query', { leaf: { uris: [`spiffe://${TD}/workload?x=1`] } }],
  ['id-with-fragment', { leaf: { uris: [`spiffe://${TD}/workload#f`] } }],
  ['id-percent-encoded', { leaf: { uris: [`spiffe://${TD}/work%6Coad`] } }],
  ['id-dot-segment', { leaf: { uris: [`spiffe://${TD}/a/../workload`] } }],
  ['id-trailing-slash', { leaf: { uris: [`spiffe://${TD}/workload/`] } }],
  ['id-empty-segment', { leaf: { uris: [`spiffe://${TD}//workload`] } }],
  ['leaf-id-without-path', { id: `spiffe://${TD}` }],
  ['duplicate-san-extension', { leaf: { extraExtensions: [sanExtension([`spiffe://${TD}/other`])] } }],
  ['leaf-unknown-critical-extension', { leaf: { extraExtensions: [UNKNOWN_EXT(true)] } }],
  ['intermediate-unknown-critical-extension', { inter: { extraExtensions: [UNKNOWN_EXT(true)] } }, (s) => s.inters > 0],
  ['root-unknown-critical-extension', { root: { extraExtensions: [UNKNOWN_EXT(true)] } }],
  ['leaf-critical-policy', { leaf: { extraExtensions: [policyExtension(true)] } }],
  ['leaf-noncritical-policy', { leaf: { extraExtensions: [policyExtension(false)] } }],
  ['leaf-sha1-signature', { leaf: { signatureHash: 'SHA-1' } }],
  ['intermediate-sha1-signature', { inter: { signatureHash: 'SHA-1' } }, (s) => s.inters > 0],
  ['leaf-sha512-signature', { leaf: { signatureHash: 'SHA-512' } }],
  ['leaf-aki-mismatch', { leaf: { authorityKeyId: '0102030405060708090a0b0c0d0e0f1011121314' } }],
  [
    'intermediate-aki-mismatch',
    { inter: { authorityKeyId: 'ffeeddccbbaa99887766554433221100ffeeddcc' } },
    (s) => s.inters > 0,
  ],
  ['nc-permitted-match', { lastInter: { extraExtensions: nameConstraints([TD], []) } }, (s) => s.inters > 0],
  [
    'nc-permitted-subdomain-form',
    { lastInter: { extraExtensions: nameConstraints([`.${TD}`], []) } },
    (s) => s.inters > 0,
  ],
  ['nc-permitted-other', { lastInter: { extraExtensions: nameConstraints(['other.org'], []) } }, (s) => s.inters > 0],
  ['nc-excluded-match', { lastInter: { extraExtensions: nameConstraints([], [TD]) } }, (s) => s.inters > 0],
  ['nc-excluded-other', { lastInter: { extraExtensions: nameConstraints([], ['other.org']) } }, (s) => s.inters > 0],
  ['nc-root-permitted-match', { root: { extraExtensions: nameConstraints([TD], []) } }],
  ['nc-root-excluded-match', { root: { extraExtensions: nameConstraints([], [TD]) } }],
  ['nc-root-permitted-other', { root: { extraExtensions: nameConstraints(['other.org'], []) } }],
  ['nc-with-dns-form', { lastInter: { extraExtensions: nameConstraints([TD], [], { dns: TD }) } }, (s) => s.inters > 0],
  ['intermediate-not-ca', { inter: { isCa: false } }, (s) => s.inters > 0],
  ['intermediate-no-key-cert-sign', { inter: { keyUsage: KU.digitalSignature | KU.cRLSign } }, (s) => s.inters > 0],
  ['intermediate-no-key-usage', { inter: { keyUsage: null } }, (s) => s.inters > 0],
  ['root-not-ca', { root: { isCa: false } }],
  ['root-no-key-cert-sign', { root: { keyUsage: KU.digitalSignature | KU.cRLSign } }],
  ['root-no-key-usage', { root: { keyUsage: null } }],
  ['root-path-len-0', { root: { pathLength: 0 } }],
  ['intermediate-path-len-0', { inter: { pathLength: 0 } }, (s) => s.inters > 0],
  ['root-path-len-1', { root: { pathLength: 1 } }],
  ['intermediate-missing', { present: (c) => [c[0] as X509Certificate] }, (s) => s.inters > 0],
  ['leaf-presented-alone-twice', { present: (c) => [c[0] as X509Certificate, c[0] as X509Certificate] }],
  ['root-presented-as-leaf', { present: (_c, x) => [x.root.certificate] }],
  ['ca-key-usage-on-ca-leaf', { present: (c) => c.slice(1) }, (s) => s.inters > 0],
  [
    'leaf-signed-by-stranger-same-name',
    {
      bundle: (_r, x) => [x.stranger.certificate],
      root: { subject: 'CN=Same Name CA, O=spiffe-ts' },
    },
  ],
];

const SHAPES: Shape[] = [
  { keyType: 'ec-p256', inters: 0 },
  { keyType: 'ec-p256', inters: 1 },
  { keyType: 'ec-p384', inters: 2 },
  { keyType: 'ec-p256', inters: 3 },
];

const b64 = (c: X509Certificate) => c.raw.toString('base64');

export async function chainCases(seed: number): Promise<Case[]> {
  const rng = new Rng(seed ^ 0x5eed);
  const cases: Case[] = [];
  const push = (kind: 'chain' | 'svid', cls: string, built: Built) => {
    const base = { id: `${kind}/${cls}/${cases.length}`, kind, class: `${kind}/${cls}`, chain: built.chain.map(b64) };
    if (kind === 'chain') {
      const roots = Object.fromEntries(Object.entries(built.roots).map(([td, cs]) => [td, cs.map(b64)]));
      cases.push({ ...base, roots, now: CHAIN_NOW.toISOString() });
    } else {
      cases.push({ ...base, key: built.key?.export({ format: 'der', type: 'pkcs8' }).toString('base64') });
    }
  };
  const shapes = [
    ...SHAPES,
    rng.pick([{ keyType: 'rsa-2048', inters: 1 } as Shape, { keyType: 'rsa-2048', inters: 0 } as Shape]),
  ];
  const jobs: Array<{ cls: string; plan: Plan; shape: Shape }> = [];
  for (const [cls, plan, when] of SCENARIOS) {
    for (const shape of shapes) {
      if (when && !when(shape)) continue;
      // RSA key generation is slow: RSA runs only the valid scenarios and a few defects.
      if (shape.keyType === 'rsa-2048' && !/^(valid|valid-deep-path|leaf-is-ca|leaf-expired)$/.test(cls)) continue;
      jobs.push({ cls, plan, shape });
    }
  }
  // Built a few at a time (key generation runs on libuv's thread pool); cases keep the jobs' order.
  for (let i = 0; i < jobs.length; i += 8) {
    const batch = jobs.slice(i, i + 8);
    const built = await Promise.all(batch.map((j) => build(j.plan, j.shape)));
    batch.forEach(({ cls, plan, shape }, n) => {
      const b = built[n] as Built;
      push('chain', cls, b);
      // The same material as one's own SVID (leaf + intermediates, with the leaf key), for the parsers.
      if (!plan.present && !plan.bundle && shape.inters <= 2) push('svid', cls, b);
    });
  }
  // Own SVIDs whose key does not belong to the leaf, and chains with something else than certificates.
  const a = await build({}, { keyType: 'ec-p256', inters: 1 });
  const b = await build({}, { keyType: 'ec-p384', inters: 0 });
  push('svid', 'key-mismatch', { ...a, key: b.key });
  push('svid', 'key-mismatch', { ...b, key: a.key });
  cases.push({
    id: `svid/no-certificates/${cases.length}`,
    kind: 'svid',
    class: 'svid/no-certificates',
    chain: [],
    key: a.key?.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
  });
  cases.push({
    id: `chain/empty-chain/${cases.length}`,
    kind: 'chain',
    class: 'chain/empty-chain',
    chain: [],
    roots: { [TD]: [b64(a.chain[1] as X509Certificate)] },
    now: CHAIN_NOW.toISOString(),
  });
  cases.push({
    id: `chain/garbage-certificate/${cases.length}`,
    kind: 'chain',
    class: 'chain/garbage-certificate',
    chain: ['MAA=', b64(a.chain[0] as X509Certificate)],
    roots: { [TD]: [] },
    now: CHAIN_NOW.toISOString(),
  });
  cases.push({
    id: `chain/truncated-certificate/${cases.length}`,
    kind: 'chain',
    class: 'chain/truncated-certificate',
    chain: [(a.chain[0] as X509Certificate).raw.subarray(0, 100).toString('base64')],
    roots: { [TD]: [] },
    now: CHAIN_NOW.toISOString(),
  });
  // Verification time exactly at the leaf's notAfter and one second after.
  const edge = await build({}, { keyType: 'ec-p256', inters: 0 });
  const leafEnd = new Date((edge.chain[0] as X509Certificate).validTo);
  for (const [cls, t] of [
    ['at-not-after', leafEnd],
    ['after-not-after', new Date(leafEnd.getTime() + 1000)],
  ] as const) {
    cases.push({
      id: `chain/${cls}/${cases.length}`,
      kind: 'chain',
      class: `chain/${cls}`,
      chain: edge.chain.map(b64),
      roots: { [TD]: (edge.roots[TD] ?? []).map(b64) },
      now: t.toISOString(),
    });
  }
  return cases;
}
