import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, readFile, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type JwtSvid, SpiffeError, type X509Context } from '@spiffe-ts/core';

/** File names for the X.509 material on disk. */
export interface X509FileNames {
  /** Certificate chain, leaf first. */
  svid: string;
  /** PKCS#8 private key (written 0600). */
  key: string;
  /** The SVID's own trust domain bundle. */
  bundle: string;
  /** Federated bundles, all in one file (omit to skip; written only when there is one). */
  federatedBundle?: string;
}

/** The names SPIFFE Helper's documentation uses (`svid_file_name`, `svid_key_file_name`, `svid_bundle_file_name`). */
export const SPIFFE_HELPER_NAMES: X509FileNames = {
  svid: 'svid.pem',
  key: 'svid_key.pem',
  bundle: 'svid_bundle.pem',
};

/**
 * An output directory (or a directory above it) that other users could write to: they could plant
 * symlinks or files at the names we write, or swap the directory, so no key is written there.
 */
export class UnsafeDirectoryError extends SpiffeError {
  /** The directory that was refused (symlinks resolved). */
  readonly directory: string;
  constructor(directory: string, message: string) {
    super('FILE_UNSAFE_DIRECTORY', message);
    this.directory = directory;
  }
}

// 0 where the platform has no O_NOFOLLOW (Windows); the exclusive create still never opens an existing name.
const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW;
const S_ISVTX = 0o1000;
const noop = () => undefined;

function describeMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/**
 * Creates `dir` (0700, with any missing parents) if needed and checks that no other user can write to it or
 * to any directory above it. Returns the directory with symlinks resolved: writes go through that path, so a
 * symlink in the given path that changes after the check cannot redirect them.
 * @throws UnsafeDirectoryError (`FILE_UNSAFE_DIRECTORY`)
 */
export async function prepareOutputDirectory(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const real = await realpath(dir);
  // POSIX permissions do not describe who can write on Windows; nothing to check there.
  if (process.platform === 'win32') return real;
  const euid = process.geteuid?.();
  const st = await stat(real);
  if (!st.isDirectory()) throw new UnsafeDirectoryError(real, `${real} is not a directory`);
  if (st.mode & 0o022) {
    const who = st.mode & 0o002 ? 'world' : 'group';
    const sticky =
      st.mode & S_ISVTX
        ? ': the sticky bit (as on /tmp) does not help here, other users can still create the names we write'
        : '';
    throw new UnsafeDirectoryError(
      real,
      `refusing to write SVID files to ${real}: it is ${who}-writable (mode ${describeMode(st.mode)})${sticky}; ` +
        'use a directory only its owner can write to (e.g. chmod 700)',
    );
  }
  if (euid !== undefined && st.uid !== euid && st.uid !== 0) {
    throw new UnsafeDirectoryError(
      real,
      `refusing to write SVID files to ${real}: it is owned by uid ${st.uid}, who could replace the files in it`,
    );
  }
  // A parent that others can write to without the sticky bit lets them rename our directory away and put
  // their own in its place between the check and the write; so does a parent owned by another user.
  for (let child = real, parent = dirname(real); parent !== child; child = parent, parent = dirname(parent)) {
    const p = await stat(parent);
    if (p.mode & 0o022 && !(p.mode & S_ISVTX)) {
      throw new UnsafeDirectoryError(
        real,
        `refusing to write SVID files to ${real}: its parent ${parent} is writable by other users ` +
          `(mode ${describeMode(p.mode)}, no sticky bit), who could swap the directory`,
      );
    }
    if (euid !== undefined && p.uid !== euid && p.uid !== 0) {
      throw new UnsafeDirectoryError(
        real,
        `refusing to write SVID files to ${real}: its parent ${parent} is owned by uid ${p.uid}, who could swap the directory`,
      );
    }
  }
  return real;
}

/**
 * Writes a file atomically, so readers never see half a certificate, and safely in a directory that is
 * checked first (see `prepareOutputDirectory`): the data goes to a new temp file with a random name, created
 * exclusively without following symlinks and with `mode` from the start, then fsync'ed and renamed over
 * `path` (which replaces a symlink at `path` instead of writing through it). The temp file never outlives
 * a failure.
 * @throws UnsafeDirectoryError (`FILE_UNSAFE_DIRECTORY`) when the directory is writable by others.
 */
export async function writeAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const dir = await prepareOutputDirectory(dirname(path));
  const name = basename(path);
  const target = join(dir, name);
  const tmp = join(dir, `.${name}.${randomBytes(16).toString('hex')}.tmp`);
  // The umask can only narrow `mode` here, so the file is never more open than asked for, not even briefly.
  let handle: FileHandle | undefined = await open(tmp, CREATE_FLAGS, mode);
  try {
    // Then exactly `mode` whatever the umask (on the descriptor: nothing to follow).
    await handle.chmod(mode);
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, target);
  } catch (err) {
    await handle?.close().catch(noop);
    await unlink(tmp).catch(noop);
    throw err;
  }
  await syncDirectory(dir);
}

/**
 * Like `writeAtomic`, but leaves the file alone when it already holds exactly `data` with exactly `mode`
 * (a regular file, not a symlink): readers watching the file see a change only when there is one.
 * Returns whether it wrote.
 * @throws UnsafeDirectoryError (`FILE_UNSAFE_DIRECTORY`) when the directory is writable by others.
 */
export async function writeIfChanged(path: string, data: string | Uint8Array, mode = 0o644): Promise<boolean> {
  const dir = await prepareOutputDirectory(dirname(path));
  const target = join(dir, basename(path));
  try {
    const st = await lstat(target);
    if (st.isFile() && (st.mode & 0o7777) === mode) {
      const current = await readFile(target);
      const wanted = typeof data === 'string' ? Buffer.from(data) : data;
      if (current.equals(wanted)) return false;
    }
  } catch {
    // No file (or an unreadable one): write it.
  }
  await writeAtomic(target, data, mode);
  return true;
}

/** Makes a rename durable across a crash; best effort, as some file systems refuse fsync on a directory. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, constants.O_RDONLY);
    await handle.sync();
  } catch {
    // Not durable, but the rename itself succeeded: nothing for the caller to act on.
  } finally {
    await handle?.close().catch(noop);
  }
}

/** Writes the default SVID, key, bundle and federated bundles of an X.509 context into a directory. */
export async function writeX509Files(
  dir: string,
  ctx: X509Context,
  names: X509FileNames = SPIFFE_HELPER_NAMES,
  svidIndex = 0,
): Promise<string[]> {
  // Check (and create) the directory before anything is written, so a refused directory gets no file at all.
  await prepareOutputDirectory(dir);
  const svid = ctx.svids[svidIndex];
  if (!svid) throw new Error(`no SVID #${svidIndex} in the Workload API response`);
  const pem = svid.toPem();
  const own = ctx.bundles.get(svid.id.trustDomain);
  const written: string[] = [];
  // Key first, then chain: a reader that sees the new chain also finds the matching key.
  await writeAtomic(join(dir, names.key), pem.privateKey, 0o600);
  written.push(join(dir, names.key));
  await writeAtomic(join(dir, names.svid), pem.certificates);
  written.push(join(dir, names.svid));
  await writeAtomic(join(dir, names.bundle), own ? own.toPem() : '');
  written.push(join(dir, names.bundle));
  const federated = federatedBundles(ctx, svidIndex);
  if (names.federatedBundle && federated.length > 0) {
    await writeAtomic(join(dir, names.federatedBundle), federated.map((b) => b.toPem()).join(''));
    written.push(join(dir, names.federatedBundle));
  }
  return written;
}

/** The bundles of the trust domains other than the SVID's own, sorted by trust domain name. */
function federatedBundles(ctx: X509Context, svidIndex: number) {
  const own = ctx.svids[svidIndex]?.id.trustDomain;
  return ctx.bundles
    .bundles()
    .filter((b) => !own || !b.trustDomain.equals(own))
    .sort((a, b) => (a.trustDomain.name < b.trustDomain.name ? -1 : a.trustDomain.name > b.trustDomain.name ? 1 : 0));
}

/**
 * Writes every SVID with spire-agent's `api fetch x509 -write` names: `svid.N.pem`, `svid.N.key`,
 * `bundle.N.pem` and, for each federated trust domain, `federated_bundle.N.M.pem` (M counts the federated
 * trust domains in name order; spire-agent takes them in map order). No federated bundle, no such file.
 */
export async function writeX509FilesSpireStyle(dir: string, ctx: X509Context): Promise<string[]> {
  const written: string[] = [];
  for (let i = 0; i < ctx.svids.length; i++) {
    written.push(
      ...(await writeX509Files(
        dir,
        ctx,
        { svid: `svid.${i}.pem`, key: `svid.${i}.key`, bundle: `bundle.${i}.pem` },
        i,
      )),
    );
    const federated = federatedBundles(ctx, i);
    for (let j = 0; j < federated.length; j++) {
      const path = join(dir, `federated_bundle.${i}.${j}.pem`);
      await writeAtomic(path, (federated[j] as (typeof federated)[number]).toPem());
      written.push(path);
    }
  }
  return written;
}

/** Writes a JWT-SVID's token (0600, like a key: it is a bearer credential) with `writeAtomic`. */
export async function writeJwtFile(path: string, svid: JwtSvid): Promise<void> {
  await writeAtomic(path, svid.token, 0o600);
}
