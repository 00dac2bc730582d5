// Several runners on one host share its dockerd and daemon.json. Each change of the file (read, edit, write,
// reload, wait for the daemon) runs under an exclusive flock(2) on the file's directory, so two jobs never
// interleave: without it, two posts at once each write the file they read, and one puts the other's mirror back.
// flock(1) holds the lock while its child lives; the child lives until its stdin closes, which it does when this
// process ends too, so a step that is killed never leaves the lock held. Any user can lock a directory it can read,
// and nothing is left behind.
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { startChild } from './processes.js';

/** Long enough for another job's reload and docker info wait (15 s) and its put-back, twice over. */
const WAIT_SECONDS = 60;

/** Runs `fn` holding the lock of `path`'s directory (its nearest one that exists); without flock(1), runs it unlocked. */
export async function withConfigLock<T>(path: string, fn: () => Promise<T>, waitSeconds = WAIT_SECONDS): Promise<T> {
  const dir = await nearestDir(dirname(path));
  let holder: ReturnType<typeof startChild>;
  try {
    holder = startChild('flock', ['--exclusive', '--wait', String(waitSeconds), dir, 'sh', '-c', 'echo locked && exec cat >/dev/null'], {
      kind: 'command',
      stdio: ['pipe', 'pipe', 'ignore'],
    });
  } catch {
    return fn(); // no flock(1) on this machine
  }
  const ended = new Promise<void>((resolve) => holder.once('close', () => resolve()));
  const outcome = await new Promise<'locked' | 'no flock' | Error>((resolve) => {
    holder.stdout!.once('data', () => resolve('locked'));
    holder.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ENOENT' ? 'no flock' : e));
    holder.once('exit', (code) =>
      resolve(new Error(`another job held the lock on ${dir} for more than ${waitSeconds} s (flock exited ${code})`)),
    );
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
