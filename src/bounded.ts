// Work with bounds: on how much runs at once (restored names can number in the thousands, and file descriptors
// and connections run out long before that), on how long an operation may take, and on how long a wait polls.
import { setTimeout as sleep } from 'node:timers/promises';

/** Runs fn over items with at most `limit` at once; results in order. */
export async function mapBounded<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * The operation's result, or an error once timeoutMs have passed. At the deadline the operation's signal aborts
 * it: its requests are cut off and the processes it started are ended.
 */
export async function withDeadline<T>(what: string, timeoutMs: number, operation: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  deadlines.set(controller.signal, Date.now() + timeoutMs);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new Error(`${what} took longer than ${timeoutMs / 1000} s (cache-timeout)`);
      controller.abort(error);
      reject(error);
    }, timeoutMs);
  });
  try {
    return await Promise.race([operation(controller.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** When each withDeadline signal aborts: a wait that cannot end before it is not worth starting. */
const deadlines = new WeakMap<AbortSignal, number>();

/** Milliseconds until the signal's deadline (Infinity for a signal withDeadline did not make); 0 once aborted. */
export function timeLeft(signal: AbortSignal): number {
  if (signal.aborted) return 0;
  const deadline = deadlines.get(signal);
  return deadline === undefined ? Infinity : Math.max(0, deadline - Date.now());
}

/** Asks `done` every intervalMs until it says yes or timeoutMs have passed (it is asked at least once); whether it did. */
export async function pollUntil(done: () => Promise<boolean>, timeoutMs: number, intervalMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await done()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}
