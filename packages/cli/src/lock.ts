import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CliError } from './errors.js';

/** Name of the dev server's lock file in its `--dir`. */
export const DEV_SERVER_LOCK = 'dev-server.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but is another user's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `dir`'s dev-server lock: a file created exclusively (O_EXCL) holding our pid. A lock whose process is
 * gone (killed with SIGKILL, crashed) is stale and taken over. Returns the release function (removes the file
 * if it still holds our pid).
 * @throws CliError (`DEV_SERVER_LOCKED`) when a live process holds it
 */
export async function lockDirectory(dir: string): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, DEV_SERVER_LOCK);
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o600);
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      return async () => {
        const held = await readFile(file, 'utf8').catch(() => '');
        if (held.trim() === String(process.pid)) await unlink(file).catch(() => undefined);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const text = (await readFile(file, 'utf8').catch(() => '')).trim();
    const pid = /^\d+$/.test(text) ? Number(text) : undefined;
    // A lock just being written may be empty for an instant: only a dead pid (or garbage, twice) is stale.
    if ((pid !== undefined && alive(pid)) || attempt >= 2) {
      throw new CliError(
        'DEV_SERVER_LOCKED',
        `another dev server${pid ? ` (pid ${pid})` : ''} is serving ${dir} (lock file ${file}); ` +
          'stop it first or pass another --dir',
      );
    }
    if (pid === undefined && attempt === 0) {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    await unlink(file).catch(() => undefined);
  }
}
