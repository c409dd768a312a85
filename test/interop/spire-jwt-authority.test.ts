// JWT authority rotation and SVID hints against a real SPIRE (issue 21): our JwtSource follows SPIRE's
// `spire-server localauthority jwt prepare / activate / taint / revoke`, and picks among several SVIDs of one
// workload by their entry hint. Its own SPIRE server, so rotating the authority disturbs no other test.
// Run with test/interop/run.sh.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  JwtSource,
  type JwtSvid,
  parseAndValidateJwtSvid,
  type SpiffeError,
  TrustDomain,
  WorkloadApiClient,
  X509Source,
} from '@spiffe-ts/core';
import { nodeSelector, Spire, waitFor } from './harness.js';
import { describeEachSpireVersion } from './suite.js';

const TD = 'rotation.example';
const ID = { a: `spiffe://${TD}/node-a`, b: `spiffe://${TD}/node-b` };
const AUDIENCE = 'rotation-audience';
// JWT-SVIDs live 10 minutes: the JwtSource would refresh a cached one only after 5. Every step below takes
// seconds, so a new token handed out here is the rotation's doing, not the half-life refresh.
const JWT_TTL = 600;

function kidOf(token: string): string {
  const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()) as { kid?: string };
  assert.ok(header.kid, 'SPIRE JWT-SVIDs carry a kid');
  return header.kid;
}

interface AuthorityState {
  authority_id?: string;
  authorityId?: string;
}

function authorityId(state: AuthorityState | undefined): string | undefined {
  return state?.authority_id ?? state?.authorityId;
}

describeEachSpireVersion(
  (version) => `SPIRE ${version}: JWT authority rotation (localauthority jwt) and SVID hints`,
  (version) => {
    let spire: Spire;
    let jwtSource: JwtSource;
    let client: WorkloadApiClient;
    const td = TrustDomain.parse(TD);
    const kids = () => [...jwtSource.bundles.getJwtBundleForTrustDomain(td).authorities.keys()].sort();

    /** `spire-server localauthority jwt <args> -output json`, parsed. */
    async function localAuthority(args: string[]): Promise<Record<string, AuthorityState | undefined>> {
      const { stdout } = await spire.server(['localauthority', 'jwt', ...args, '-output', 'json']);
      return JSON.parse(stdout) as Record<string, AuthorityState | undefined>;
    }

    before(async () => {
      spire = await Spire.startServer(TD, { version });
      // Two identities for this one Node process, told apart by their hints.
      await spire.createEntry({ spiffeId: ID.a, selectors: [nodeSelector()], hint: 'a', jwtSvidTtl: JWT_TTL });
      await spire.createEntry({ spiffeId: ID.b, selectors: [nodeSelector()], hint: 'b', jwtSvidTtl: JWT_TTL });
      await spire.startAgent();
      client = new WorkloadApiClient({ address: spire.workloadApiAddress });
      jwtSource = await JwtSource.create({ address: spire.workloadApiAddress, timeoutMs: 60_000 });
      // Both entries reach the agent on its first sync; wait until it serves both SVIDs.
      await waitFor('both SVIDs from the agent', async () =>
        (await client.fetchX509Svids()).length === 2 ? true : undefined,
      );
    });

    after(async () => {
      await jwtSource?.close();
      await client?.close();
      if (spire) await spire.stop();
    });

    test('hints: JwtSource and X509Source pick the SVID of the entry with that hint', async () => {
      for (const [hint, id] of [
        ['a', ID.a],
        ['b', ID.b],
      ] as const) {
        const jwt = await jwtSource.fetchJwtSvid({ audience: AUDIENCE, hint });
        assert.equal(jwt.id.toString(), id);
        assert.equal(jwt.hint, hint);
        const source = await X509Source.create({
          address: spire.workloadApiAddress,
          pick: { hint },
          timeoutMs: 60_000,
        });
        try {
          assert.equal(source.getX509Svid().id.toString(), id);
          assert.equal(source.getX509Svid().hint, hint);
        } finally {
          await source.close();
        }
      }
      await assert.rejects(
        jwtSource.fetchJwtSvid({ audience: AUDIENCE, hint: 'no-such-hint' }),
        (e: SpiffeError) => e.code === 'WORKLOADAPI_BAD_RESPONSE',
      );
    });

    describe('JWT authority rotation, step by step', () => {
      let first: JwtSvid; // fetched before the rotation, signed by the original authority
      let oldKid: string;
      let newKid: string;
      let halfLife: number; // when the JwtSource would refresh `first` on its own

      test('before: the token is signed by the active authority, and the JwtSource caches it', async () => {
        first = await jwtSource.fetchJwtSvid({ audience: AUDIENCE, hint: 'a' });
        oldKid = kidOf(first.token);
        const shown = await localAuthority(['show']);
        assert.equal(authorityId(shown.active), oldKid);
        assert.deepEqual(kids(), [oldKid]);
        const iat = (first.claims.iat as number) * 1000;
        halfLife = iat + (first.expiresAt.getTime() - iat) / 2;
        assert.equal((await jwtSource.fetchJwtSvid({ audience: AUDIENCE, hint: 'a' })).token, first.token);
      });

      test('prepare: the new key reaches the JwtSource’s bundle; the cached token stays', async () => {
        const prepared = await localAuthority(['prepare']);
        newKid = authorityId(prepared.prepared_authority ?? prepared.preparedAuthority) ?? '';
        assert.ok(newKid && newKid !== oldKid, `prepared a new authority: ${JSON.stringify(prepared)}`);
        await waitFor(`kid ${newKid} in the JwtSource's bundle`, async () =>
          kids().includes(newKid) ? true : undefined,
        );
        assert.deepEqual(kids(), [newKid, oldKid].sort());
        // The old key is still in the bundle, so the cached token is still good everywhere: kept.
        assert.equal((await jwtSource.fetchJwtSvid({ audience: AUDIENCE, hint: 'a' })).token, first.token);
      });

      test('activate and taint: SPIRE signs with the new key; the tainted key stays in the bundle', async () => {
        const activated = await localAuthority(['activate', '-authorityID', newKid]);
        assert.equal(authorityId(activated.activated_authority ?? activated.activatedAuthority), newKid);
        const tainted = await localAuthority(['taint', '-authorityID', oldKid]);
        assert.equal(authorityId(tainted.tainted_authority ?? tainted.taintedAuthority), oldKid);
        // The agent drops the JWT-SVIDs it cached that the tainted key signed; what it hands out next is
        // signed by the new key (once its next sync brings the taint).
        const fresh = await waitFor('the agent to sign with the new key', async () => {
          const svid = await client.fetchJwtSvid({ audience: AUDIENCE, hint: 'a' });
          return kidOf(svid.token) === newKid ? svid : undefined;
        });
        assert.equal(fresh.id.toString(), ID.a);
        await parseAndValidateJwtSvid(fresh.token, jwtSource.bundles, AUDIENCE);
        // SPIRE keeps a tainted key in the JWT bundle it gives workloads (the Workload API has no taint
        // mark), so tokens it signed still validate until it is revoked.
        assert.deepEqual(kids(), [newKid, oldKid].sort());
        await parseAndValidateJwtSvid(first.token, jwtSource.bundles, AUDIENCE);
      });

      test('revoke: the old key leaves the bundle; JwtSource hands out a new-key token, the old one fails', async () => {
        const revoked = await localAuthority(['revoke', '-authorityID', oldKid]);
        assert.equal(authorityId(revoked.revoked_authority ?? revoked.revokedAuthority), oldKid);
        await waitFor(`kid ${oldKid} to leave the JwtSource's bundle`, async () =>
          kids().includes(oldKid) ? undefined : true,
        );
        assert.deepEqual(kids(), [newKid]);

        const next = await jwtSource.fetchJwtSvid({ audience: AUDIENCE, hint: 'a' });
        assert.ok(Date.now() < halfLife, 'still before the cached token’s half-life: not an ordinary refresh');
        assert.notEqual(next.token, first.token);
        assert.equal(kidOf(next.token), newKid);
        assert.equal((await parseAndValidateJwtSvid(next.token, jwtSource.bundles, AUDIENCE)).id.toString(), ID.a);
        // Cached again: the same token until the next change.
        assert.equal((await jwtSource.fetchJwtSvid({ audience: AUDIENCE, hint: 'a' })).token, next.token);

        // The revoked authority's token: our core refuses it against the bundle, so does SPIRE's agent.
        await assert.rejects(
          parseAndValidateJwtSvid(first.token, jwtSource.bundles, AUDIENCE),
          (e: SpiffeError) => e.code === 'JWTSVID_UNKNOWN_KID',
        );
        await assert.rejects(client.validateJwtSvid(first.token, AUDIENCE));
        assert.equal(authorityId((await localAuthority(['show'])).active), newKid);
      });
    });
  },
);
