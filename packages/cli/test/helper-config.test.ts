// Reading SPIFFE Helper config files: HCL v1 as spiffe-helper reads it (octal modes, blocks, repeated lists),
// its defaults and validation rules, and the helper writing files only when their content changes.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CliError, helperOptionsFromConfig, runCli, writeIfChanged } from '@spiffe-ts/cli';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';

const X509 = 'svid_file_name = "svid.pem"\nsvid_key_file_name = "key.pem"\nsvid_bundle_file_name = "bundle.pem"\n';
const parse = (text: string, env: NodeJS.ProcessEnv = {}, daemonMode?: boolean) => {
  const warnings: string[] = [];
  const options = helperOptionsFromConfig(text, 'helper.conf', { env, daemonMode, warn: (w) => warnings.push(w) });
  return { options, warnings };
};
const refused = (text: string, message: RegExp, env: NodeJS.ProcessEnv = {}) =>
  assert.throws(
    () => parse(text, env),
    (err: unknown) => err instanceof CliError && err.code === 'HELPER_CONFIG_INVALID' && message.test(err.message),
  );

describe('helper config file', () => {
  test("spiffe-helper's defaults", () => {
    const { options } = parse(X509);
    assert.equal(options.address, 'unix:///tmp/spire-agent/public/api.sock');
    assert.equal(options.dir, '.');
    assert.deepEqual(options.names, { svid: 'svid.pem', key: 'key.pem', bundle: 'bundle.pem' });
    assert.deepEqual(
      [options.certFileMode, options.keyFileMode, options.jwtSvidFileMode, options.jwtBundleFileMode],
      [0o644, 0o600, 0o600, 0o600],
    );
    assert.equal(options.once, false, 'daemon_mode defaults to true');
    assert.equal(options.health, undefined);
    assert.equal(options.exitWithCmd, false, 'keeps running when the program exits, like spiffe-helper');
  });

  test('modes are read as HCL v1 reads them: 0644 is octal, 444 decimal (= 0674), "0640" a string int', () => {
    const { options } = parse(`${X509}cert_file_mode = 0444\nkey_file_mode = 444\njwt_svid_file_mode = "0640"\n`);
    assert.equal(options.certFileMode, 0o444);
    assert.equal(options.keyFileMode, 444);
    assert.equal(options.jwtSvidFileMode, 0o640);
    refused(`${X509}cert_file_mode = -1\n`, /cert file mode must be positive/);
    refused(`${X509}key_file_mode = 01777\n`, /key_file_mode must be a file mode from 0 to 0777/);
  });

  test('agent_address takes a path (spiffe-helper) or a URI; else SPIFFE_ENDPOINT_SOCKET, SPIRE_AGENT_ADDRESS', () => {
    assert.equal(parse(`${X509}agent_address = "/run/a.sock"\n`).options.address, 'unix:///run/a.sock');
    assert.equal(parse(`${X509}agent_address = "tcp://127.0.0.1:9"\n`).options.address, 'tcp://127.0.0.1:9');
    assert.equal(parse(X509, { SPIFFE_ENDPOINT_SOCKET: '/e.sock' }).options.address, 'unix:///e.sock');
    const legacy = parse(X509, { SPIRE_AGENT_ADDRESS: '/l.sock' });
    assert.equal(legacy.options.address, 'unix:///l.sock');
    assert.match(legacy.warnings.join(), /deprecated/);
    refused(X509, /both SPIRE_AGENT_ADDRESS and SPIFFE_ENDPOINT_SOCKET/, {
      SPIRE_AGENT_ADDRESS: '/a',
      SPIFFE_ENDPOINT_SOCKET: '/b',
    });
  });

  test('cmd_args are split as spiffe-helper splits them (CSV, space separated, double quotes group)', () => {
    const { options } = parse(`${X509}cmd = "mysql"\ncmd_args = "-e \\"ALTER INSTANCE RELOAD TLS;\\" --x"\n`);
    assert.deepEqual(options.cmdArgs, ['-e', 'ALTER INSTANCE RELOAD TLS;', '--x']);
    refused(`${X509}cmd = "a"\ncmd_args = "a\\"b"\n`, /cmd_args/);
  });

  test('jwt_svids (list or repeated), health_checks block, hint, booleans', () => {
    const { options } = parse(`
jwt_svids = [{ jwt_audience = "a", jwt_svid_file_name = "a.jwt", jwt_extra_audiences = ["b", "c"] }]
jwt_svids = [{ jwt_audience = "d", jwt_svid_file_name = "d.jwt" }]
jwt_bundle_file_name = "jwks.json"
health_checks {
  listener_enabled = true
  readiness_path = "/r"
}
hint = "internal"
add_intermediates_to_bundle = true
include_federated_domains = true
omit_expired = true
`);
    assert.equal(options.names, null, 'no X.509 files');
    assert.deepEqual(options.jwtSvids, [
      { audience: 'a', extraAudiences: ['b', 'c'], file: 'a.jwt' },
      { audience: 'd', extraAudiences: [], file: 'd.jwt' },
    ]);
    assert.equal(options.jwtBundleFile, 'jwks.json');
    assert.deepEqual(options.health, { port: 8081, livenessPath: '/live', readinessPath: '/r' });
    assert.equal(options.hint, 'internal');
    assert.deepEqual(
      [options.addIntermediatesToBundle, options.includeFederatedDomains, options.omitExpired],
      [true, true, true],
    );
  });

  test('daemon_mode = false (or -daemon-mode=false): one-shot; cmd and renew_signal ignored with a warning', () => {
    const body = `${X509}cmd = "nginx"\nrenew_signal = "SIGHUP"\nhealth_checks { listener_enabled = true }\n`;
    const file = parse(`${body}daemon_mode = false\n`);
    assert.equal(file.options.once, true);
    assert.equal(file.options.cmd, undefined);
    assert.equal(file.options.health, undefined, 'no health listener in one-shot mode');
    assert.match(file.warnings.join('\n'), /cmd is set but daemon_mode is false/);
    const flag = parse(`${body}daemon_mode = true\n`, {}, false);
    assert.equal(flag.options.once, true, 'the flag overrides the file');
  });

  test("spiffe-helper's refusals, and ours of values it would only trip on later", () => {
    refused(`${X509}unknown_key = 1\nother = 2\n`, /unknown top level key\(s\): other,unknown_key/);
    refused(
      'jwt_svids = [{ jwt_audience = "a", jwt_svid_file_name = "f", x = 1 }]',
      /unknown key\(s\) in jwt_svids\[0\]: x/,
    );
    refused('svid_file_name = "a"\n', /all or none of/);
    refused('cert_dir = "x"\n', /at least one of the sets/);
    refused(`${X509}pid_file_name = "p"\n`, /must specify renew_signal when using pid_file_name/);
    refused(
      `${X509}pid_file_name = "p"\nrenew_signal = "SIGHUP"\ndaemon_mode = false\n`,
      /only supported in daemon_mode/,
    );
    refused('jwt_svids = [{ jwt_audience = "a" }]', /'jwt_svid_file_name' is required/);
    refused(`${X509}renew_signal = "SIGBOGUS"\n`, /renew_signal: unknown signal "SIGBOGUS"/);
    refused(`${X509}daemon_mode = "no"\n`, /daemon_mode must be true or false/);
    refused(`${X509}hint = "unterminated\n`, /literal not terminated/);
    // Unknown keys inside health_checks: spiffe-helper ignores them; so do we, with a warning.
    assert.match(
      parse(`${X509}health_checks { bogus = 1 }\n`).warnings.join(),
      /ignoring unknown key\(s\) in health_checks: bogus/,
    );
  });
});

describe('writing only what changed', () => {
  let base: string;
  let dev: DevWorkloadApiServer;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'spiffe-helper-config-'));
    dev = await DevWorkloadApiServer.start({
      workloads: { w: ['spiffe://example.org/a', 'spiffe://example.org/b'] },
      autoRotate: false,
    });
  });
  after(async () => {
    await dev.stop();
    await rm(base, { recursive: true, force: true });
  });

  test('writeIfChanged leaves an identical file alone and rewrites on new content or another mode', async () => {
    const f = join(base, 'w', 'x.pem');
    assert.equal(await writeIfChanged(f, 'one', 0o644), true);
    const ino = (await stat(f)).ino;
    assert.equal(await writeIfChanged(f, 'one', 0o644), false);
    assert.equal((await stat(f)).ino, ino);
    assert.equal(await writeIfChanged(f, 'one', 0o600), true, 'another mode');
    assert.equal((await stat(f)).mode & 0o777, 0o600);
    assert.equal(await writeIfChanged(f, 'two', 0o600), true);
    assert.equal(await readFile(f, 'utf8'), 'two');
  });

  test('--config one-shot run twice: the second run rewrites nothing; hint picks the SVID', async () => {
    const dir = join(base, 'conf');
    const conf = join(base, 'helper.conf');
    await writeFile(
      conf,
      `agent_address = "${dev.address('w').slice('unix://'.length)}"\ncert_dir = "${dir}"\ndaemon_mode = false\n` +
        `${X509}jwt_bundle_file_name = "jwks.json"\nhint = "b"\n`,
    );
    const quiet = { out: () => undefined, err: () => undefined };
    assert.equal(await runCli(['helper', '--config', conf], quiet), 0);
    const inodes = await Promise.all(
      ['svid.pem', 'key.pem', 'bundle.pem', 'jwks.json'].map(async (f) => (await stat(join(dir, f))).ino),
    );
    assert.match(await readFile(join(dir, 'svid.pem'), 'utf8'), /BEGIN CERTIFICATE/);
    assert.equal(await runCli(['helper', '--config', conf], quiet), 0);
    const again = await Promise.all(
      ['svid.pem', 'key.pem', 'bundle.pem', 'jwks.json'].map(async (f) => (await stat(join(dir, f))).ino),
    );
    assert.deepEqual(again, inodes, 'same content: not rewritten');
    const { X509Svid } = await import('@spiffe-ts/core');
    const svid = X509Svid.parse(
      await readFile(join(dir, 'svid.pem'), 'utf8'),
      await readFile(join(dir, 'key.pem'), 'utf8'),
    );
    assert.equal(svid.id.toString(), 'spiffe://example.org/b');
    const jwks = JSON.parse(await readFile(join(dir, 'jwks.json'), 'utf8'));
    assert.deepEqual(Object.keys(jwks), ['example.org']);
    assert.ok(Array.isArray(JSON.parse(Buffer.from(jwks['example.org'], 'base64').toString()).keys));
  });
});
