// Consumer tests: the packages as users install them. Packs every package (`pnpm pack`, after `pnpm build`),
// then with npm and with pnpm creates fresh projects in a temp dir outside the repo — an ES module app, a
// CommonJS app and a Nest app in CommonJS compiled with tsc (nest new's tsconfig) — installs the tarballs plus
// the frameworks from the registry, and runs the apps: each starts the dev Workload API from the installed
// @spiffe-ts/dev-server and makes one real mTLS request through each adapter (Fastify, Express, NestJS, gRPC),
// asserting the SPIFFE ID the server saw and a 403 / PERMISSION_DENIED for another workload.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { packAll, publishedPackages, root } from '../../scripts/lib/pack.mjs';

const fixtures = join(root, 'test', 'consumers', 'fixtures');
const FRAMEWORKS = {
  '@grpc/grpc-js': '^1.14.0',
  '@nestjs/common': '^11.1.9',
  '@nestjs/core': '^11.1.9',
  '@nestjs/platform-express': '^11.1.9',
  express: '^5.2.1',
  fastify: '^5.12.8',
  'reflect-metadata': '^0.2.2',
  rxjs: '^7.8.2',
  undici: '^6.29.1',
};
const NEST_ONLY = ['@nestjs/common', '@nestjs/core', '@nestjs/platform-express', 'reflect-metadata', 'rxjs', 'undici'];
const INSTALL_TIMEOUT_MS = 5 * 60_000;

type Kind = 'esm' | 'cjs' | 'nest-cjs';
type Manager = 'npm' | 'pnpm';

let work: string;
let tarballs: Record<string, string>;

// The child processes get a plain environment: no test-runner or package-manager variables from this process.
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_|pnpm_|NODE_OPTIONS$|NODE_TEST|TSX_)/i.test(k)) continue;
    env[k] = v;
  }
  return env;
}

function sh(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited with ${code ?? signal}:\n${out}`));
    });
  });
}

function createProject(manager: Manager, kind: Kind): string {
  const dir = join(work, `${manager}-${kind}`);
  mkdirSync(dir, { recursive: true });
  const spiffe =
    kind === 'nest-cjs'
      ? ['@spiffe-ts/core', '@spiffe-ts/dev-server', '@spiffe-ts/nestjs']
      : Object.keys(tarballs).filter((n) => n !== '@spiffe-ts/cli');
  const third = kind === 'nest-cjs' ? NEST_ONLY : Object.keys(FRAMEWORKS);
  const dependencies: Record<string, string> = {};
  for (const n of spiffe) dependencies[n] = `file:${tarballs[n]}`;
  for (const n of third) dependencies[n] = FRAMEWORKS[n as keyof typeof FRAMEWORKS];
  const pkg: Record<string, unknown> = { name: `consumer-${manager}-${kind}`, version: '1.0.0', private: true };
  if (kind === 'esm') pkg.type = 'module';
  if (kind === 'cjs') pkg.type = 'commonjs';
  pkg.dependencies = dependencies;
  if (kind === 'nest-cjs') pkg.devDependencies = { typescript: '^5.9.3', '@types/node': '^20.19.43' };
  // The adapters' tarballs depend on `@spiffe-ts/core` by version, which the registry does not have (or not
  // this build of it): point every @spiffe-ts/* at its tarball. pnpm needs this; npm dedupes onto the top-level
  // tarball install, and `overrides` makes that explicit.
  const overrides = Object.fromEntries(Object.entries(tarballs).map(([n, t]) => [n, `file:${t}`]));
  if (manager === 'pnpm') pkg.pnpm = { overrides };
  else pkg.overrides = overrides;
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  if (kind === 'nest-cjs') cpSync(join(fixtures, 'nest-cjs'), dir, { recursive: true });
  else {
    cpSync(join(fixtures, 'checks.cjs'), join(dir, 'checks.cjs'));
    const app = kind === 'esm' ? 'app.mjs' : 'app.cjs';
    cpSync(join(fixtures, app), join(dir, 'app.js'));
  }
  return dir;
}

async function install(manager: Manager, dir: string): Promise<void> {
  if (manager === 'npm') {
    // One npm cache for every run (and across runs, in the repo's gitignored .cache).
    const cache = join(root, '.cache', 'npm');
    await sh(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', '--cache', cache],
      dir,
      INSTALL_TIMEOUT_MS,
    );
  } else {
    // The project-local pnpm (what scripts/env.sh puts on PATH); its store is shared by every install.
    const local = join(root, '.cache', 'bin', 'pnpm');
    await sh(existsSync(local) ? local : 'pnpm', ['install', '--reporter=append-only'], dir, INSTALL_TIMEOUT_MS);
  }
}

async function runApp(kind: Kind, dir: string): Promise<Record<string, string>> {
  if (kind === 'nest-cjs') {
    await sh(
      process.execPath,
      [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'],
      dir,
      120_000,
    );
  }
  const out = await sh(process.execPath, [kind === 'nest-cjs' ? 'dist/main.js' : 'app.js'], dir, 120_000);
  const line = out.split('\n').find((l) => l.startsWith('{"ok"'));
  assert.ok(line, `no result line in:\n${out}`);
  return (JSON.parse(line) as { results: Record<string, string> }).results;
}

const CLIENT = 'spiffe://example.org/consumer/client';

before(() => {
  for (const p of publishedPackages()) {
    assert.ok(existsSync(join(p.dir, 'dist')), `${p.name} is not built: run \`pnpm build\` first`);
  }
  work = mkdtempSync(join(tmpdir(), 'spiffe-ts-consumers-'));
  const packs = join(work, 'tarballs');
  mkdirSync(packs);
  tarballs = Object.fromEntries(packAll(packs).map((p) => [p.name, p.tarball]));
});

after(() => {
  if (work && !process.env.KEEP_CONSUMERS) rmSync(work, { recursive: true, force: true });
});

for (const manager of ['npm', 'pnpm'] as const) {
  describe(`installed with ${manager} from the packed tarballs`, { timeout: 15 * 60_000 }, () => {
    test('ES module app: Fastify, Express, NestJS and gRPC over SPIFFE mTLS see the client SPIFFE ID', async () => {
      const dir = createProject(manager, 'esm');
      await install(manager, dir);
      assert.deepEqual(await runApp('esm', dir), { fastify: CLIENT, express: CLIENT, nestjs: CLIENT, grpc: CLIENT });
    });
    test('CommonJS app: Fastify, Express, NestJS and gRPC over SPIFFE mTLS see the client SPIFFE ID', async () => {
      const dir = createProject(manager, 'cjs');
      await install(manager, dir);
      assert.deepEqual(await runApp('cjs', dir), { fastify: CLIENT, express: CLIENT, nestjs: CLIENT, grpc: CLIENT });
    });
    test('Nest app in CommonJS, compiled with tsc (nest new tsconfig): @PeerSpiffeId is the client', async () => {
      const dir = createProject(manager, 'nest-cjs');
      await install(manager, dir);
      assert.deepEqual(await runApp('nest-cjs', dir), { 'nestjs (tsc, commonjs)': CLIENT });
    });
  });
}
