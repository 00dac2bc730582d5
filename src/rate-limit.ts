// The cache service and its signed URLs limit how fast a repository may call them (since 2026-01 200 entry uploads a
// minute; look-ups too): past it they answer 429 with Retry-After. Every call the action makes to them goes through
// fetchRetrying, which waits as told, then backs off with jitter, and gives up on that call when the wait would not
// fit in what is left of its deadline. What one call is told holds back every call of this process to the same host:
// calls in flight do not each find out on their own.
import { setTimeout as sleep } from 'node:timers/promises';
import { timeLeft } from './bounded.js';

/** What a call was, as the report names what was rate-limited. */
export type CallKind = 'look-ups' | 'creates' | 'finalizes' | 'uploads' | 'downloads' | 'listings' | 'deletes';

/** Attempts at a call the service fails (a 5xx or a dropped connection without Retry-After), as @actions/cache makes. */
export const FAILURE_ATTEMPTS = 3;
/** Attempts at a call the service rate-limits (429, or a Retry-After): each waits at least as told. */
export const LIMITED_ATTEMPTS = 8;
/** The backoff's first step and its cap: 0.5 s, 1 s, 2 s, ... 30 s, of which a random half is added. */
const BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;

/**
 * How long to wait before the next attempt at a call, or undefined to give up: after `attempt` attempts, told to
 * wait `retryAfterMs` (undefined: not told), with `timeLeftMs` before the caller's deadline. The wait is never
 * shorter than told; on top comes an exponential backoff of which `jitter` (0 to 1) picks the random half, so
 * that jobs told the same Retry-After do not all come back at the same instant.
 */
export function retryWait(
  attempt: number,
  limited: boolean,
  retryAfterMs: number | undefined,
  timeLeftMs: number,
  jitter: number,
): number | undefined {
  if (attempt >= (limited || retryAfterMs !== undefined ? LIMITED_ATTEMPTS : FAILURE_ATTEMPTS)) return undefined;
  const backoff = Math.min(MAX_BACKOFF_MS, BACKOFF_MS * 2 ** (attempt - 1));
  const wait = Math.ceil((retryAfterMs ?? 0) + backoff / 2 + (Math.min(Math.max(jitter, 0), 1) * backoff) / 2);
  return wait <= timeLeftMs ? wait : undefined;
}

/** Retry-After in milliseconds: delta-seconds or an HTTP date (RFC 9110); undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.ceil(Number(text) * 1000);
  // An HTTP date starts with the day's name ("Sun, 06 Nov 1994 08:49:37 GMT"); Date.parse takes much else.
  const at = /^[A-Za-z]{3},? /.test(text) ? Date.parse(text) : NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Why a call was given up: the service kept rate-limiting it past what its deadline left. */
export class RateLimited extends Error {
  override name = 'RateLimited';
}

/**
 * How long the service held calls back. `ms` is wall-clock time some call was waiting as told (waits that overlap
 * count once); `refused` the calls it answered 429 or Retry-After; `kinds` which calls. A hold made for one entry
 * (`within`) adds to the hold of the whole operation too.
 */
export class HeldBack {
  ms = 0;
  refused = 0;
  readonly kinds = new Set<CallKind>();
  private until = 0;

  constructor(private readonly within?: HeldBack) {}

  /** A wait from now until `until` for a call of this kind, and whether the service refused it (or told another). */
  add(kind: CallKind, now: number, until: number, refused: boolean): void {
    if (refused) this.refused++;
    this.kinds.add(kind);
    if (until > this.until) this.ms += until - Math.max(now, this.until);
    this.until = Math.max(this.until, until);
    this.within?.add(kind, now, until, refused);
  }

  /** As a progress record or a save's result carries it. */
  summary(): HeldBackSummary {
    return { ms: this.ms, refused: this.refused, kinds: [...this.kinds] };
  }
}

export interface HeldBackSummary {
  ms: number;
  refused: number;
  kinds: CallKind[];
}

/** Everything this process's calls to the cache service were held back: the restore worker's, or the save's. */
export const processHeldBack = new HeldBack();

/** The earliest each host may be called again, as its last Retry-After said. */
const notBefore = new Map<string, number>();

/** What this process was told to wait for (host -> epoch ms): handed to a worker that calls the service next. */
export function waitsTold(): Record<string, number> {
  return Object.fromEntries([...notBefore].filter(([, until]) => until > Date.now()));
}

/** Takes on the waits another process was told: a worker never calls sooner than main was told it may. */
export function honourWaits(told: Record<string, number> | undefined): void {
  for (const [host, until] of Object.entries(told ?? {}))
    if (Number.isSafeInteger(until) && until > (notBefore.get(host) ?? 0)) notBefore.set(host, until);
}

export interface RetryingCall {
  /** For messages: what the call does ("looking up KEY"). */
  what: string;
  kind: CallKind;
  signal: AbortSignal;
  /** The hold of the entry this call is for (made `within` processHeldBack); the process's own by default. */
  held?: HeldBack;
  /** The most this call may wait for the service in all, when less than its deadline leaves (the index look-up). */
  maxWaitMs?: number;
}

/**
 * Makes the request (`init` gives it afresh for each attempt) until the answer is neither a 429 nor a 5xx, waiting
 * as told between attempts; the answer is the caller's. Throws RateLimited when the service kept rate-limiting it
 * past what the deadline (or maxWaitMs) leaves, or an Error naming the last failure.
 */
export async function fetchRetrying(
  url: URL | string,
  init: () => Promise<RequestInit> | RequestInit,
  call: RetryingCall,
): Promise<Response> {
  const host = new URL(url).host;
  const held = call.held ?? processHeldBack;
  const started = Date.now();
  const left = () => Math.min(timeLeft(call.signal), call.maxWaitMs === undefined ? Infinity : started + call.maxWaitMs - Date.now());
  for (let attempt = 1; ; attempt++) {
    // Told to wait by an answer to another call: wait too, or give up when that does not fit.
    // A little jitter, so that the calls held back together do not all come back at the same instant.
    const wait = (notBefore.get(host) ?? 0) - Date.now();
    if (wait > 0) {
      if (wait > left())
        throw new RateLimited(`the cache service rate-limited ${call.what} (told to wait ${seconds(wait)}, more than is left)`);
      const jittered = Math.min(left(), Math.ceil(wait + (Math.random() * BACKOFF_MS) / 2));
      held.add(call.kind, Date.now(), Date.now() + jittered, false);
      await sleep(jittered, undefined, { signal: call.signal });
    }
    let failure: string;
    let retryAfterMs: number | undefined;
    let limited = false;
    try {
      const res = await fetch(url, { ...(await init()), signal: call.signal });
      if (res.status !== 429 && res.status < 500) return res;
      await res.body?.cancel().catch(() => undefined);
      retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), Date.now());
      limited = res.status === 429 || retryAfterMs !== undefined;
      failure = `the cache service answered ${res.status} ${call.what}`;
    } catch (e) {
      if (call.signal.aborted || !(e instanceof TypeError)) throw e;
      failure = `the cache service could not be reached ${call.what} (${(e.cause as Error | undefined)?.message ?? e.message})`;
    }
    const now = Date.now();
    const next = retryWait(attempt, limited, retryAfterMs, left(), Math.random());
    if (limited) {
      const told = now + (retryAfterMs ?? 0);
      if (told > (notBefore.get(host) ?? 0)) notBefore.set(host, told);
      held.add(call.kind, now, now + (next ?? 0), true);
    }
    if (next === undefined) {
      if (!limited) throw new Error(failure);
      const told = retryAfterMs === undefined ? '' : `, told to wait ${seconds(retryAfterMs)}`;
      throw new RateLimited(`the cache service rate-limited ${call.what} (${attempt} ${attempt === 1 ? 'attempt' : 'attempts'}${told})`);
    }
    await sleep(next, undefined, { signal: call.signal });
  }
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}
