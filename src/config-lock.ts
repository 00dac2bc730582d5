// Several runners on one host share its dockerd and daemon.json. Each change of the file (read, edit, write,
// reload, wait for the daemon) runs under an exclusive flock(2) on a lock file of the action's own beside it, so two
// jobs never interleave: without it, two posts at once each write the file they read, and one puts the other's
// mirror back. The lock file is mode 0600 in the config's directory, which only the config's owner may write (root,
// or the user of a rootless daemon): no other user can open it, so none can hold the lock and keep post from taking
// its mirror out. (Any user can open, and lock, a directory it can read, as /etc/docker is.)
// flock(1) holds the lock while its child lives; the child lives until its stdin closes, which it does when this
// process ends too, so a step that is killed never leaves the lock held.
import { access, chmod, constants, lstat, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { startChild } from './processes.js';

/** Long enough for another job's reload and docker info wait (15 s) and its put-back, twice over. */
const WAIT_SECONDS = 60;

const LOCK_FILE = '.pull-cache-action.lock';

/** The lock file of the config at `path`: in its directory (the nearest one that exists). */
export async function configLockFile(path: string): Promise<string> {
  return join(await nearestDir(dirname(path)), LOCK_FILE);
}

/**
 * Runs `fn` holding the lock of the config at `path`; without flock(1), runs it unlocked. A lock file this user may
 * not open (root's, to a runner user) is locked through sudo.
 */
export async function withConfigLock<T>(path: string, fn: () => Promise<T>, waitSeconds = WAIT_SECONDS): Promise<T> {
  const file = await configLockFile(path);
  const own = await mayOpen(file);
  // The umask keeps a lock file flock(1) creates to its owner; sudo would widen it to its own (0022).
  const lock = `umask 077 && exec flock --exclusive --wait ${waitSeconds} "$0" sh -c 'echo locked && exec cat >/dev/null'`;
  let holder: ReturnType<typeof startChild>;
  try {
    holder = startChild(own ? 'sh' : 'sudo', [...(own ? [] : ['-n', 'sh']), '-c', lock, file], {
      kind: 'command',
      stdio: ['pipe', 'pipe', 'ignore'],
    });
  } catch {
    return fn(); // no sh or sudo on this machine: nothing to lock with
  }
  const ended = new Promise<void>((resolve) => holder.once('close', () => resolve()));
  const outcome = await new Promise<'locked' | 'no flock' | Error>((resolve) => {
    holder.stdout!.once('data', () => resolve('locked'));
    holder.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ENOENT' ? 'no flock' : e));
    holder.once('exit', (code) => {
      if (code === 127) return resolve('no flock');
      const why =
        code === 1 ? `another job held it for more than ${waitSeconds} s${own ? '' : ', or sudo -n refused'}` : `flock exited ${code}`;
      resolve(new Error(`could not take the lock ${file}: ${why}`));
    });
  });
  if (outcome instanceof Error) throw outcome;
  try {
    return await fn();
  } finally {
    if (outcome === 'locked') {
      holder.stdin!.end();
      await ended;
    }
  }
}

/**
 * Whether this user can open the lock file itself (its own, or root running the action), keeping it to its owner;
 * false when only root may (sudo then).
 */
async function mayOpen(file: string): Promise<boolean> {
  const existing = await lstat(file).catch(() => null);
  if (!existing)
    return access(dirname(file), constants.W_OK).then(
      () => true,
      () => false,
    );
  const me = process.geteuid?.() ?? 0;
  if (me !== 0 && existing.uid !== me) return false;
  if (existing.isFile() && existing.mode & 0o077) await chmod(file, 0o600); // made by an earlier flock(1) of root's, say
  return true;
}

async function nearestDir(dir: string): Promise<string> {
  for (let d = dir; ; d = dirname(d)) {
    if (
      d === dirname(d) ||
      (await stat(d).then(
        (s) => s.isDirectory(),
        () => false,
      ))
    )
      return d;
  }
}
