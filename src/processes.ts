// Processes this action started and left running between its steps (the registry, the prefetch worker).
import { readFile } from 'node:fs/promises';

/** Running (not a zombie waiting to be reaped), and, when `argument` is given, started with that argument. */
export async function isRunning(pid: number, argument?: string): Promise<boolean> {
  const [stat, cmdline] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/cmdline`, 'utf8')]).catch(() => ['', '']);
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== '' && state !== 'Z' && (argument === undefined || cmdline.split('\0').includes(argument));
}
