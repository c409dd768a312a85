// `spiffe-ts init EXAMPLE DIR`: copies one of the repository's examples into a project of its own, with
// dependency ranges npm understands instead of pnpm's `workspace:*`, and (with --tarballs, from a checkout)
// this checkout's packages packed into DIR/vendor so it runs before they are on the registry.
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CliError, usageError } from './errors.js';

/** Everything `init` needs to know about where the examples and the package versions come from. */
interface TemplateSet {
  /** Directory holding one directory per example. */
  examplesDir: string;
  /** compilerOptions of the repository's tsconfig.base.json, which the examples extend. */
  baseCompilerOptions: Record<string, unknown>;
  /** Version of every @spiffe-ts package, by name. */
  versions: Record<string, string>;
  /** Ranges of the tools the examples take from the repository root (typescript, @types/node). */
  tools: Record<string, string>;
  /** The repository root, when run from a checkout (then --tarballs can pack its packages). */
  checkout?: string;
}

/**
 * Written by scripts/copy-templates.mjs at build time into dist/templates/manifest.json, next to
 * dist/templates/examples and dist/templates/tsconfig.base.json.
 */
interface TemplateManifest {
  versions: Record<string, string>;
  tools: Record<string, string>;
}

/** Names never copied from an example: installs, build output, caches. scripts/copy-templates.mjs skips the same. */
const SKIPPED = new Set(['node_modules', 'dist', '.turbo', 'coverage', 'vendor']);
const skipped = (name: string) => SKIPPED.has(name) || name.endsWith('.tsbuildinfo') || name.endsWith('.log');

const DEP_FIELDS = ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies'] as const;

type Json = Record<string, unknown>;
const readJson = (file: string): Json => JSON.parse(readFileSync(file, 'utf8')) as Json;
const writeJson = (file: string, value: unknown) => writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);

/** The cli package's own directory (one level above src/ and dist/). */
function packageRoot(): string {
  return fileURLToPath(new URL('..', import.meta.url));
}

/**
 * Finds the examples: in a spiffe-ts checkout the live examples/ (never a stale build copy), else the
 * dist/templates directory the published package carries.
 */
export function loadTemplates(pkgRoot = packageRoot()): TemplateSet {
  const root = resolve(pkgRoot, '..', '..');
  if (isCheckout(root)) {
    const versions: Record<string, string> = {};
    for (const p of workspacePackages(root)) versions[p.name] = p.version;
    const rootPkg = readJson(join(root, 'package.json'));
    return {
      examplesDir: join(root, 'examples'),
      baseCompilerOptions: compilerOptionsOf(join(root, 'tsconfig.base.json')),
      versions,
      tools: pickTools(rootPkg.devDependencies as Record<string, string> | undefined),
      checkout: root,
    };
  }
  const dir = join(pkgRoot, 'dist', 'templates');
  let manifest: TemplateManifest;
  try {
    manifest = readJson(join(dir, 'manifest.json')) as unknown as TemplateManifest;
  } catch (err) {
    throw new CliError('INIT_NO_TEMPLATES', `this spiffe-ts has no example templates (${dir}): reinstall it`, {
      cause: err,
    });
  }
  return {
    examplesDir: join(dir, 'examples'),
    baseCompilerOptions: compilerOptionsOf(join(dir, 'tsconfig.base.json')),
    versions: manifest.versions,
    tools: manifest.tools,
  };
}

function isCheckout(root: string): boolean {
  try {
    return (
      existsSync(join(root, 'pnpm-workspace.yaml')) &&
      existsSync(join(root, 'examples')) &&
      readJson(join(root, 'package.json')).name === 'spiffe-ts'
    );
  } catch {
    return false;
  }
}

interface WorkspacePackage {
  name: string;
  version: string;
  dir: string;
  /** The @spiffe-ts packages it depends on at run time. */
  deps: string[];
}

/** The published packages of a checkout: packages/* that are not private (as scripts/lib/pack.mjs lists them). */
function workspacePackages(root: string): WorkspacePackage[] {
  const out: WorkspacePackage[] = [];
  for (const name of readdirSync(join(root, 'packages')).sort()) {
    const dir = join(root, 'packages', name);
    let pkg: Json;
    try {
      pkg = readJson(join(dir, 'package.json'));
    } catch {
      continue;
    }
    if (pkg.private) continue;
    const deps = [pkg.dependencies, pkg.peerDependencies].flatMap((d) =>
      Object.keys((d as Record<string, string> | undefined) ?? {}).filter((n) => n.startsWith('@spiffe-ts/')),
    );
    out.push({ name: pkg.name as string, version: pkg.version as string, dir, deps });
  }
  return out;
}

/** Ranges of the tools an example's scripts use but take from the repository root. */
export function pickTools(devDependencies: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['typescript', '@types/node']) {
    const range = devDependencies?.[name];
    if (range) out[name] = range;
  }
  return out;
}

function compilerOptionsOf(file: string): Record<string, unknown> {
  const options = { ...((readJson(file).compilerOptions as Record<string, unknown> | undefined) ?? {}) };
  // The repository resolves @spiffe-ts/* to their sources with this condition; a project of its own has
  // only the published builds.
  delete options.customConditions;
  return options;
}

/** The examples there are, sorted. */
export function exampleNames(templates: TemplateSet): string[] {
  try {
    return readdirSync(templates.examplesDir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(templates.examplesDir, d.name, 'package.json')))
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
}

/** What `initExample` is asked to do. */
export interface InitOptions {
  /** An example name (a directory of examples/). */
  example: string;
  /** The new project's directory; must not exist or be empty. Its base name becomes the package name. */
  target: string;
  /** Pack this checkout's packages into TARGET/vendor and depend on the tarballs. */
  tarballs: boolean;
  /** Progress lines. */
  log: (line: string) => void;
}

/** What `initExample` did. */
export interface InitResult {
  /** Absolute path of the new project. */
  dir: string;
  /** The project's package name. */
  name: string;
  /** The tarballs written to vendor/ (file names), with --tarballs. */
  tarballs: string[];
  /** Whether `npm start` runs the example end to end on its own (it has a `demo`). */
  selfContained: boolean;
  /** Whether it was made from a checkout (its examples, its versions). */
  fromCheckout: boolean;
}

// npm's rules for a package name, for an unscoped one: lowercase, URL-safe, not starting with . or _.
const NPM_NAME = /^[a-z0-9][a-z0-9._~-]*$/;

/** Copies an example into `target` and turns it into a project of its own. See the README (`init`). */
export async function initExample(options: InitOptions, templates = loadTemplates()): Promise<InitResult> {
  const available = exampleNames(templates);
  if (!available.includes(options.example)) {
    throw usageError(`unknown example "${options.example}": choose one of ${available.join(', ')}`);
  }
  const dir = resolve(options.target);
  const name = basename(dir);
  if (!NPM_NAME.test(name) || name.length > 214 || name === 'node_modules') {
    throw usageError(
      `the directory name "${name}" cannot be a package name: use lowercase letters, digits, - . _ ~ ` +
        '(not first: . _ -)',
    );
  }
  if (options.tarballs && !templates.checkout) {
    throw new CliError(
      'INIT_NO_CHECKOUT',
      '--tarballs packs the packages of a spiffe-ts checkout; run this spiffe-ts from one (node packages/cli/dist/bin.js)',
    );
  }
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory() || readdirSync(dir).length > 0) {
      throw new CliError('INIT_TARGET_EXISTS', `${dir} already exists and is not an empty directory`);
    }
  }
  const source = join(templates.examplesDir, options.example);
  if (templates.checkout && isInside(dir, templates.checkout)) {
    // Inside the workspace, pnpm and npm would both treat it as part of the monorepo.
    throw usageError(`${dir} is inside the spiffe-ts checkout: choose a directory outside ${templates.checkout}`);
  }
  const createdDir = !existsSync(dir);
  mkdirSync(dir, { recursive: true });
  try {
    cpSync(source, dir, { recursive: true, filter: (src) => src === source || !skipped(basename(src)) });
    const tarballs = options.tarballs ? await packInto(templates, join(dir, 'vendor'), source, options.log) : {};
    const pkg = rewritePackageJson(join(dir, 'package.json'), name, templates, tarballs);
    inlineTsconfigs(dir, source, templates);
    if (!existsSync(join(dir, '.gitignore'))) writeFileSync(join(dir, '.gitignore'), 'node_modules/\ndist/\n');
    const scripts = (pkg.scripts as Record<string, string> | undefined) ?? {};
    return {
      dir,
      name,
      tarballs: Object.values(tarballs).map((t) => t.replace(/^file:vendor\//, '')),
      selfContained: scripts.demo !== undefined && scripts.start === scripts.demo,
      fromCheckout: templates.checkout !== undefined,
    };
  } catch (err) {
    // Leave nothing half-made behind: the directory was ours (absent or empty before).
    if (createdDir) rmSync(dir, { recursive: true, force: true });
    else for (const f of readdirSync(dir)) rmSync(join(dir, f), { recursive: true, force: true });
    throw err;
  }
}

const isInside = (child: string, parent: string) => {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'));
};

/**
 * The example's package.json as a project of its own: named after its directory, `workspace:` ranges made
 * `^VERSION` (or `file:vendor/TARBALL`, with npm `overrides` so the tarballs' own @spiffe-ts dependencies
 * resolve to the tarballs too), the tools it took from the repository root added.
 */
function rewritePackageJson(
  file: string,
  name: string,
  templates: TemplateSet,
  tarballs: Record<string, string>,
): Json {
  const pkg = readJson(file);
  const out: Json = { name, version: '0.1.0', private: true };
  for (const [k, v] of Object.entries(pkg)) if (!(k in out)) out[k] = v;
  for (const field of DEP_FIELDS) {
    const deps = out[field] as Record<string, string> | undefined;
    if (!deps) continue;
    for (const [dep, range] of Object.entries(deps)) {
      if (!range.startsWith('workspace:')) continue;
      const version = templates.versions[dep];
      if (!version) throw new CliError('INIT_NO_TEMPLATES', `no version known for ${dep} (needed by the example)`);
      deps[dep] = tarballs[dep] ?? `^${version}`;
    }
  }
  const scripts = (out.scripts as Record<string, string> | undefined) ?? {};
  const devDeps = { ...((out.devDependencies as Record<string, string> | undefined) ?? {}) };
  const has = (dep: string) => DEP_FIELDS.some((f) => (out[f] as Record<string, string> | undefined)?.[dep]);
  if (scripts.typecheck) {
    for (const [tool, range] of Object.entries(templates.tools)) if (!has(tool)) devDeps[tool] = range;
  }
  if (!scripts.test && has('tsx') && hasTests(dirname(file))) {
    scripts.test = 'node --import tsx --test test/*.test.ts';
  }
  if (Object.keys(scripts).length) out.scripts = scripts;
  if (Object.keys(devDeps).length) out.devDependencies = sortKeys(devDeps);
  if (Object.keys(tarballs).length) out.overrides = { ...(out.overrides as Json | undefined), ...tarballs };
  out.engines ??= { node: '>=20.19' };
  writeJson(file, out);
  return out;
}

function hasTests(dir: string): boolean {
  try {
    return readdirSync(join(dir, 'test')).some((f) => f.endsWith('.test.ts'));
  } catch {
    return false;
  }
}

const sortKeys = (o: Record<string, string>) =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));

/**
 * tsconfig files that extend the repository's tsconfig.base.json (outside the example) get its
 * compilerOptions written in instead, under their own.
 */
function inlineTsconfigs(dir: string, source: string, templates: TemplateSet): void {
  for (const rel of tsconfigFiles(dir)) {
    const file = join(dir, rel);
    const config = readJson(file);
    const ext = config.extends;
    if (typeof ext !== 'string' || !ext.startsWith('.')) continue;
    const target = resolve(dirname(join(source, rel)), ext);
    if (isInside(target, source) || basename(target) !== 'tsconfig.base.json') continue;
    const rest: Json = { ...config };
    delete rest.extends;
    const own = (rest.compilerOptions as Record<string, unknown> | undefined) ?? {};
    delete rest.compilerOptions;
    writeJson(file, { compilerOptions: { ...templates.baseCompilerOptions, ...own }, ...rest });
  }
}

function tsconfigFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const rel = join(prefix, e.name);
    if (e.isDirectory() && !skipped(e.name)) out.push(...tsconfigFiles(dir, rel));
    else if (e.isFile() && /^tsconfig(\..+)?\.json$/.test(e.name)) out.push(rel);
  }
  return out;
}

const run = promisify(execFile);

/**
 * Packs the @spiffe-ts packages the example needs (and theirs) from the checkout with `pnpm pack`, which
 * applies `files` and turns `workspace:*` into versions, as publishing does. Returns `file:vendor/...` by name.
 */
async function packInto(
  templates: TemplateSet,
  vendor: string,
  exampleDir: string,
  log: (line: string) => void,
): Promise<Record<string, string>> {
  const all = new Map(workspacePackages(templates.checkout as string).map((p) => [p.name, p]));
  const example = readJson(join(exampleDir, 'package.json'));
  const wanted = new Set<string>();
  const visit = (dep: string) => {
    const p = all.get(dep);
    if (!p || wanted.has(dep)) return;
    wanted.add(dep);
    for (const d of p.deps) visit(d);
  };
  for (const field of DEP_FIELDS) {
    for (const [dep, range] of Object.entries((example[field] as Record<string, string> | undefined) ?? {})) {
      if (range.startsWith('workspace:')) visit(dep);
    }
  }
  mkdirSync(vendor, { recursive: true });
  const out: Record<string, string> = {};
  for (const dep of [...wanted].sort()) {
    const p = all.get(dep) as WorkspacePackage;
    if (!existsSync(join(p.dir, 'dist'))) {
      throw new CliError(
        'INIT_PACK_FAILED',
        `${p.name} is not built (${join(p.dir, 'dist')} is missing): run pnpm build`,
      );
    }
    log(`packing ${p.name}`);
    const before = new Set(readdirSync(vendor));
    try {
      await run('pnpm', ['pack', '--pack-destination', vendor], { cwd: p.dir });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      const why = e.code === 'ENOENT' ? 'pnpm is not on PATH (source scripts/env.sh)' : (e.stderr || e.message).trim();
      throw new CliError('INIT_PACK_FAILED', `pnpm pack of ${p.name} failed: ${why}`, { cause: err });
    }
    const created = readdirSync(vendor).filter((f) => f.endsWith('.tgz') && !before.has(f));
    if (created.length !== 1) {
      throw new CliError('INIT_PACK_FAILED', `pnpm pack of ${p.name} made ${created.length} tarballs, not one`);
    }
    out[dep] = `file:vendor/${created[0]}`;
  }
  return out;
}
