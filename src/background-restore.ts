// The cache's entries, restored in the background while the job runs: main starts this bundle again, detached,
// with --restore and the path of its plan, once the mirrors serve. Most recently used images come first; a blob
// moves into the storage only whole and checked, and an image's links appear only once all of its blobs are in
// place, so a pull that comes earlier goes to the upstream as a miss and never meets a partial image. The worker
// writes one JSON line per entry and per image to its progress file: the prefetch waits on it, post reads it.
import { appendFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pollUntil, withDeadline } from './bounded.js';
import { contentOf, holdersOf, imageKey, STORAGE_DIR, type Budget, type CachedImage, type EntryRef } from './cache-index.js';
import { displayName } from './images.js';
import { NO_CACHE_SERVICE, type CacheService } from './cache-entry.js';
import { NOTHING_RESTORED, restoreBlobs, restoreIndex, type CacheScope, type Restored } from './persistence.js';
import { isRunning, receiveSecret, startWorker } from './processes.js';
import { honourWaits, processHeldBack, type CallKind, type HeldBackSummary } from './rate-limit.js';
import { writeLinks } from './storage.js';

const RESTORE_ARGUMENT = '--restore';
/**
 * Entries restored at once. Few enough that most of the queue is still waiting when the job's first pull arrives
 * and can let the image it asks for go first; enough to keep the download going while another entry is checked.
 */
const RESTORE_CONCURRENCY = 4;

export interface RestorePlan {
  workDir: string;
  /**
   * Set when the cache service rate-limited main's index look-up past what main waits: the worker keeps trying
   * (as told, within timeoutMs), then selects and restores the entries as main would have. entries, images and
   * sizes are then empty.
   */
  lateIndex?: { scope: CacheScope; budget: Budget; registries: string[]; waitsTold: Record<string, number> };
  entries: EntryRef[];
  images: CachedImage[];
  /** Each blob's size, as the index gives it: what an entry's archive may hold. */
  sizes: Record<string, number>;
  progress: string;
  timeoutMs: number;
}

/** An entry tried: whether the cache had it, and which of its blobs are now in the storage. */
export interface EntryRecord {
  entry: string;
  found: boolean;
  present: string[];
  refused?: string;
  /** Why it was given up: the cache service rate-limited it past what cache-timeout left. */
  limited?: string;
  /** The cache service said it does not have it. */
  gone?: true;
  /** How long the cache service's rate limits held it back. */
  heldBackMs?: number;
  bytes: number;
  at: number;
}

/** An image linked: `whole` once all its blobs were in place; at the end, an incomplete one with what it has. */
export interface ImageRecord {
  image: string;
  /** As the prefetch names it. */
  ref: string;
  repository: string;
  linked: string[];
  whole: boolean;
  at: number;
}

/** The index the worker restored after main went on without it (RestorePlan.lateIndex), and what it selected. */
export interface LateIndexRecord {
  lateIndex: Pick<Restored, 'restoredKey' | 'index' | 'images' | 'dropped' | 'entries' | 'refused'>;
  at: number;
}

export interface DoneRecord {
  done: true;
  at: number;
  error?: string;
  /** How long the cache service's rate limits held the restore back, in all (waits that overlap count once). */
  heldBack?: HeldBackSummary;
}

export interface RestoreProgress {
  lateIndex?: LateIndexRecord;
  entries: EntryRecord[];
  images: ImageRecord[];
  done?: DoneRecord;
}

/**
 * Starts the worker detached (it outlives the main step); returns its pid. The cache service's address and token
 * go to it on its stdin: a process's environment and arguments are readable by the job's other processes.
 */
export async function startRestore(plan: RestorePlan, service: CacheService): Promise<number> {
  const planFile = join(plan.workDir, 'restore-plan.json');
  await writeFile(planFile, JSON.stringify(plan), { mode: 0o600 });
  await writeFile(plan.progress, '');
  return startWorker('restore worker', [RESTORE_ARGUMENT, planFile], service).pid!;
}

/** The plan's path when this process is the restore worker (`node index.js --restore PLAN`); undefined otherwise. */
export function restorePlanFile(argv: string[]): string | undefined {
  return argv[2] === RESTORE_ARGUMENT ? argv[3] : undefined;
}

/** The worker: restores the plan's entries within its deadline, then records that it is done (and why, if cut off). */
export async function runRestore(planFile: string): Promise<void> {
  const service = await receiveSecret<CacheService>();
  const plan = JSON.parse(await readFile(planFile, 'utf8')) as RestorePlan;
  const record = (r: LateIndexRecord | EntryRecord | ImageRecord | DoneRecord) => appendFile(plan.progress, `${JSON.stringify(r)}\n`);
  const error = await withDeadline('restoring the cache', plan.timeoutMs, async (signal) => {
    if (!service) throw new Error(NO_CACHE_SERVICE);
    await restoreEntries(service, plan.lateIndex ? await selectLate(service, plan, record, signal) : plan, record, signal);
  }).then(
    () => undefined,
    (e: Error) => e.message,
  );
  const heldBack = processHeldBack.summary();
  await record({ done: true, at: Date.now(), ...(error ? { error } : {}), ...(heldBack.refused ? { heldBack } : {}) });
}

/** The index main could not wait for, looked up again as long as the service says and the deadline allows. */
async function selectLate(
  service: CacheService,
  plan: RestorePlan,
  record: (r: LateIndexRecord) => Promise<void>,
  signal: AbortSignal,
): Promise<RestorePlan> {
  const { scope, budget, registries, waitsTold } = plan.lateIndex!;
  honourWaits(waitsTold);
  const { restoredKey, index, images, dropped, entries, refused } = await restoreIndex(
    service,
    scope,
    budget,
    registries,
    new Date(),
    signal,
  );
  await record({ lateIndex: { restoredKey, index, images, dropped, entries, refused }, at: Date.now() });
  return { ...plan, entries, images, sizes: index?.blobs ?? {} };
}

async function restoreEntries(
  service: CacheService,
  plan: RestorePlan,
  record: (r: EntryRecord | ImageRecord) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  const storage = join(plan.workDir, STORAGE_DIR);
  const restoring = join(plan.workDir, 'restoring');
  const present = new Set<string>();
  const waiting = new Set(plan.images);
  const queue = new RestoreQueue(plan.entries, plan.images);
  const inPlace = new ImagesInPlace(plan.images);
  let started = 0;
  const nextEntry = async () => queue.take(await heldImages(plan.workDir));
  const link = async (image: CachedImage, whole: boolean) => {
    waiting.delete(image);
    await writeLinks(storage, [image], present);
    const key = imageKey(image);
    await record({
      image: key,
      ref: displayName(key),
      repository: image.repository,
      linked: contentOf(image).filter((d) => present.has(d)),
      whole,
      at: Date.now(),
    });
  };
  try {
    const worker = async () => {
      for (let entry = await nextEntry(); entry; entry = await nextEntry()) {
        const outcome = await restoreBlobs(service, entry, plan.sizes, join(restoring, String(started++)), storage, signal);
        outcome.present.forEach((d) => present.add(d));
        const bytes = outcome.present.reduce((sum, d) => sum + (plan.sizes[d] ?? 0), 0);
        await record({ entry: entry.key, ...outcome, bytes, at: Date.now() });
        for (const image of inPlace.add(outcome.present)) await link(image, true);
      }
    };
    await Promise.all(Array.from({ length: RESTORE_CONCURRENCY }, worker));
    // Images left had a blob refused or missing: what they have still serves, the rest comes from the upstream.
    for (const image of [...waiting]) await link(image, false);
  } finally {
    await rm(restoring, { recursive: true, force: true });
  }
}

/**
 * The entries left to restore, in restore order (most recently used image's first), and which of them hold a blob of
 * an image a pull waits for. Built once: over the whole restore each entry and each digest is looked at a bounded
 * number of times (a scan of the queue and of every image for each entry took minutes on a hostile index).
 */
export class RestoreQueue {
  private readonly taken: boolean[];
  private readonly holders: Map<string, number[]>;
  private readonly imagesByKey = new Map<string, CachedImage[]>();
  private readonly heldSeen = new Set<string>();
  private readonly wantedDigests = new Set<string>();
  /** Positions of entries holding a blob of a held image, smallest first; some may be taken since. */
  private readonly wanted = new MinHeap();
  private first = 0;

  constructor(
    private readonly entries: EntryRef[],
    images: CachedImage[],
  ) {
    this.taken = entries.map(() => false);
    this.holders = holdersOf(entries);
    for (const image of images) {
      const key = imageKey(image);
      const same = this.imagesByKey.get(key);
      if (same) same.push(image);
      else this.imagesByKey.set(key, [image]);
    }
  }

  /**
   * Takes the next entry to restore: the first left that holds a blob of an image a pull is waiting for (`held`, by
   * image key: the mirrors' front records those, and only adds to them), else the first left.
   */
  take(held: ReadonlyMap<string, number>): EntryRef | undefined {
    if (held.size > this.heldSeen.size) for (const key of held.keys()) this.want(key);
    while (this.wanted.size > 0 && this.taken[this.wanted.peek()]) this.wanted.pop();
    while (this.first < this.entries.length && this.taken[this.first]) this.first++;
    const next = this.wanted.size > 0 ? this.wanted.pop() : this.first;
    if (next >= this.entries.length) return undefined;
    this.taken[next] = true;
    return this.entries[next];
  }

  private want(key: string): void {
    if (this.heldSeen.has(key)) return;
    this.heldSeen.add(key);
    for (const image of this.imagesByKey.get(key) ?? [])
      for (const digest of contentOf(image)) {
        if (this.wantedDigests.has(digest)) continue;
        this.wantedDigests.add(digest);
        for (const i of this.holders.get(digest) ?? []) if (!this.taken[i]) this.wanted.push(i);
      }
  }
}

/** A binary min-heap of positions. */
class MinHeap {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): number {
    return this.items[0];
  }

  push(item: number): void {
    const a = this.items;
    a.push(item);
    for (let i = a.length - 1, parent = (i - 1) >> 1; i > 0 && a[parent] > a[i]; i = parent, parent = (i - 1) >> 1)
      [a[parent], a[i]] = [a[i], a[parent]];
  }

  pop(): number {
    const a = this.items;
    const top = a[0];
    const last = a.pop()!;
    if (a.length === 0) return top;
    a[0] = last;
    for (let i = 0; ;) {
      const [l, r] = [2 * i + 1, 2 * i + 2];
      const smallest = r < a.length && a[r] < a[l] ? r : l;
      if (smallest >= a.length || a[i] <= a[smallest]) return top;
      [a[i], a[smallest]] = [a[smallest], a[i]];
      i = smallest;
    }
  }
}

/**
 * Which images have every blob in place as entries come in. Each image counts the blobs it still lacks, so an entry
 * costs the images that need its blobs, not a look at every image still waiting.
 */
export class ImagesInPlace {
  private readonly lacking: number[];
  private readonly needing = new Map<string, number[]>();
  /** Images that lack nothing from the start: whole with the first entry, as any other check would find them. */
  private whole: number[];

  constructor(private readonly images: CachedImage[]) {
    this.lacking = images.map((image, i) => {
      const content = new Set(contentOf(image));
      for (const digest of content) {
        const needing = this.needing.get(digest);
        if (needing) needing.push(i);
        else this.needing.set(digest, [i]);
      }
      return content.size;
    });
    this.whole = this.lacking.flatMap((n, i) => (n === 0 ? [i] : []));
  }

  /** The images that the blobs just put in place make whole, in the plan's order; each image once. */
  add(digests: Iterable<string>): CachedImage[] {
    const whole = this.whole;
    this.whole = [];
    for (const digest of digests) {
      for (const i of this.needing.get(digest) ?? []) if (--this.lacking[i] === 0) whole.push(i);
      this.needing.delete(digest);
    }
    return whole.sort((a, b) => a - b).map((i) => this.images[i]);
  }
}

/** Where the mirrors' front records the first request it held for each image: one JSON line each. */
export function heldFile(workDir: string): string {
  return join(workDir, 'gate-held.jsonl');
}

/** When the job first asked for each image the front held (image key -> epoch ms). */
export async function heldImages(workDir: string): Promise<Map<string, number>> {
  const held = new Map<string, number>();
  for (const line of (await readFile(heldFile(workDir), 'utf8').catch(() => '')).split('\n')) {
    try {
      const { image, at } = JSON.parse(line) as { image: string; at: number };
      if (!held.has(image)) held.set(image, at);
    } catch {
      // a line being written as it is read
    }
  }
  return held;
}

/** The worker's records so far (a line being written as it is read is skipped). */
export function parseProgress(text: string): RestoreProgress {
  const progress: RestoreProgress = { entries: [], images: [] };
  for (const line of text.split('\n')) {
    let r: Partial<EntryRecord & ImageRecord & DoneRecord>;
    try {
      r = JSON.parse(line) as typeof r;
    } catch {
      continue;
    }
    if (r.done) progress.done = r as DoneRecord;
    else if ((r as Partial<LateIndexRecord>).lateIndex) progress.lateIndex = r as unknown as LateIndexRecord;
    else if (r.entry) progress.entries.push(r as EntryRecord);
    else if (r.image) progress.images.push(r as ImageRecord);
  }
  return progress;
}

export async function readProgress(file: string): Promise<RestoreProgress> {
  return parseProgress(await readFile(file, 'utf8').catch(() => ''));
}

/**
 * Waits for the worker until it is done or `waitMs` have passed, then ends it (its process group: the worker and
 * its tar); returns what it recorded.
 */
export async function finishRestore(pid: number, progress: string, waitMs: number): Promise<RestoreProgress> {
  await pollUntil(async () => !(await isRunning(pid, RESTORE_ARGUMENT)), waitMs, 100);
  if (await isRunning(pid, RESTORE_ARGUMENT)) process.kill(-pid, 'SIGKILL');
  return readProgress(progress);
}

/**
 * What the restore came to, from what main selected and the worker recorded: an entry is kept when every blob
 * it holds is in place, missing when the cache did not have it, and its blobs are damaged when it was there but
 * they failed their check. Entries the worker never finished leave the restore unfinished.
 */
export function restoreOutcome(mainSelected: Restored, progress: RestoreProgress): Restored {
  // Main went on without the index: what the worker restored later stands for what main would have selected.
  if (mainSelected.indexLimited && !progress.lateIndex) return { ...mainSelected, finished: false };
  const late = progress.lateIndex;
  const selected: Restored = late
    ? { ...NOTHING_RESTORED, ...late.lateIndex, indexLate: { limited: mainSelected.indexLimited!, at: late.at } }
    : mainSelected;
  const tried = new Map(progress.entries.map((r) => [r.entry, r]));
  const present = new Set(progress.entries.flatMap((r) => r.present));
  const done = selected.entries.filter((e) => tried.has(e.key));
  return {
    ...selected,
    finished: done.length === selected.entries.length && !progress.done?.error,
    present: [...present],
    // An entry the service rate-limited is still there: the next index names it, and its blobs are not saved again.
    // One restored is seen now (the next index's time); one rate-limited was seen when the index says.
    kept: done
      .filter((e) => (tried.get(e.key)!.found && e.digests.every((d) => present.has(d))) || tried.get(e.key)!.limited)
      .map(({ seen, ...e }) => (tried.get(e.key)!.found ? e : { ...e, seen: seen ?? selected.index?.created })),
    missingEntries: done.filter((e) => !tried.get(e.key)!.found && !tried.get(e.key)!.limited).length,
    gone: done.filter((e) => tried.get(e.key)!.gone),
    damaged: done.flatMap((e) => (tried.get(e.key)!.found ? e.digests.filter((d) => !present.has(d)) : [])),
    refused: [...selected.refused, ...progress.entries.flatMap((r) => (r.refused ? [r.refused] : []))],
  };
}

/** When each repository came to link each blob: a request before that went to the upstream. */
export function linkedAt(progress: RestoreProgress): Map<string, number> {
  const at = new Map<string, number>();
  for (const image of progress.images)
    for (const d of image.linked) if (!at.has(`${image.repository}@${d}`)) at.set(`${image.repository}@${d}`, image.at);
  return at;
}

/**
 * Waits (bounded) until the image is linked or the restore is done, whichever comes first: the prefetch pulls an
 * image only once the cache can serve it.
 */
export async function whenInPlace(progress: string, ref: string, waitMs: number): Promise<void> {
  await pollUntil(async () => readProgress(progress).then((p) => !!p.done || p.images.some((i) => i.ref === ref)), waitMs, 100);
}

/** What the report says of the background restore. */
export interface BackgroundRestoreFacts {
  images: number;
  /** Seconds from the start of the restore to its end; null when it was stopped unfinished. */
  seconds: number | null;
  finished: boolean;
  /** Images the job asked for before they were in place: its pull waited for them (seconds after the restore started). */
  early: { image: string; askedAt: number; inPlaceAt: number | null; restoredShare: number }[];
  /** What the cache service's rate limits cost the restore; null when it never rate-limited it. */
  heldBack?: RestoreHeldBack | null;
}

export interface RestoreHeldBack {
  /** Seconds the restore waited as told, in all. */
  seconds: number;
  kinds: CallKind[];
  /** Entries restored after a wait. */
  late: number;
  /** Entries given up: their blobs came from the upstream. */
  givenUp: number;
}

/** What the cache service's rate limits cost the restore, from the worker's records. */
export function restoreHeldBack(progress: RestoreProgress): RestoreHeldBack | null {
  const held = progress.done?.heldBack;
  const givenUp = progress.entries.filter((r) => r.limited).length;
  if (!held?.refused && !givenUp) return null;
  return {
    seconds: Math.round((held?.ms ?? 0) / 1000),
    kinds: held?.kinds ?? [],
    late: progress.entries.filter((r) => r.found && r.heldBackMs).length,
    givenUp,
  };
}

/**
 * How far the restore had come when the job first asked for each image the mirrors' front held (`held`: image
 * key -> epoch ms). Times in the result are seconds after the restore started.
 */
export function backgroundRestoreFacts(
  restored: Restored,
  progress: RestoreProgress,
  started: number,
  held: ReadonlyMap<string, number>,
): BackgroundRestoreFacts {
  const total = progress.entries.reduce((sum, r) => sum + r.bytes, 0) || 1;
  const inPlace = new Map(progress.images.filter((i) => i.whole).map((i) => [i.image, i.at]));
  const seconds = (ms: number) => Math.max(0, Math.round((ms - started) / 100) / 10);
  const early = [...held].map(([key, asked]) => {
    const share = progress.entries.filter((r) => r.at <= asked).reduce((sum, r) => sum + r.bytes, 0) / total;
    const at = inPlace.get(key);
    return {
      image: displayName(key),
      askedAt: seconds(asked),
      inPlaceAt: at === undefined ? null : seconds(at),
      restoredShare: Math.round(share * 100) / 100,
    };
  });
  return {
    images: restored.images.length,
    seconds: restored.finished && progress.done ? seconds(progress.done.at) : null,
    finished: restored.finished,
    early,
    heldBack: restoreHeldBack(progress),
  };
}
