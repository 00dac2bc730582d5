// daemon.json as text in, text out: what the daemon reads while the mirror is up, and what goes back after.
// The action's edits are minimal and textual: it inserts its mirror, and later takes out exactly that, so that
// everything else in the file (the user's keys, order, formatting, a job step's own edits) stays as it is.
import { engineRelease } from './builtin-buildkit.js';
import { sha256Hex } from './sha256.js';

/** The file dockerd reads its config from when run without --config-file (rootful). */
export const DOCKERD_CONFIG = '/etc/docker/daemon.json';

export const MIRRORS_KEY = 'registry-mirrors';

type DaemonJson = Record<string, unknown>;

/**
 * Parses daemon.json; refuses anything that is not a JSON object, so it is never overwritten blindly.
 * `outcome` says what the action did about it, for the message.
 */
export function parseDaemonConfig(text: string, path: string, outcome = 'it was left as it is and the mirror was not set'): DaemonJson {
  let value: unknown;
  try {
    value = JSON.parse(text.trim() === '' ? '{}' : text);
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message}); ${outcome}`, { cause: e });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${path} does not hold a JSON object; ${outcome}`);
  }
  const mirrors = (value as DaemonJson)[MIRRORS_KEY];
  if (mirrors != null && !(Array.isArray(mirrors) && mirrors.every((m) => typeof m === 'string'))) {
    throw new Error(`${path} has a "${MIRRORS_KEY}" that is not a list of URLs; ${outcome}`);
  }
  return value as DaemonJson;
}

/** SHA-256 (hex) of a config's bytes: how post tells whether the file is still the one main wrote. */
export function digestOf(content: string | Buffer): string {
  return sha256Hex(content);
}

/**
 * The config with `mirror` first in registry-mirrors (tried first), every other key and mirror kept, and the text
 * around the insertion untouched. No file (or an empty one) becomes a small new config.
 */
export function withMirror(original: string | null, mirror: string, path: string): string {
  const text = original?.trim() ? original : '{}\n';
  const config = parseDaemonConfig(text, path);
  const listed = config[MIRRORS_KEY] as string[] | null | undefined;
  if (listed?.length && sameMirror(listed[0], mirror)) return text;
  const top = containerAt(text, text.indexOf('{'));
  const member = lastMember(top, MIRRORS_KEY);
  if (!member) {
    const item = `${JSON.stringify(MIRRORS_KEY)}: [${JSON.stringify(mirror)}]`;
    return top.items.length ? withFirstItem(text, top, item) : `${text.slice(0, top.open + 1)}\n  ${item}\n${text.slice(top.close)}`;
  }
  if (text[member.value.start] !== '[') return splice(text, member.value.start, member.value.end, `[${JSON.stringify(mirror)}]`);
  // Listed further down (a URL with a trailing slash, say): moved to the front rather than listed twice.
  const { text: without } = removeMirrorItems(text, mirror);
  const list = containerAt(without, lastMember(containerAt(without, without.indexOf('{')), MIRRORS_KEY)!.value.start);
  return list.items.length
    ? withFirstItem(without, list, JSON.stringify(mirror))
    : splice(without, list.open + 1, list.close, JSON.stringify(mirror));
}

/**
 * `current` with every listing of `mirror` taken out of registry-mirrors, the rest of the text as it is. A list
 * this leaves empty goes with its key (dockerd reads no key and an empty list alike at start), unless
 * `keepEmptyList`: the file held an empty list before the action came.
 */
export function withoutMirror(current: string, mirror: string, path: string, keepEmptyList: boolean, outcome?: string): string {
  if (current.trim() === '') return current;
  parseDaemonConfig(current, path, outcome);
  const { text, removed, emptied } = removeMirrorItems(current, mirror);
  if (!removed || !emptied || keepEmptyList) return text;
  const top = containerAt(text, text.indexOf('{'));
  return withoutItem(text, top, top.items.indexOf(lastMember(top, MIRRORS_KEY)!));
}

/** What main recorded of the config, for post: see DaemonState. */
export interface SavedConfig {
  /** The file before main; null when there was none. */
  original: Buffer | null;
  /** digestOf the bytes main wrote. */
  written: string;
  mirror: string;
}

/**
 * The config to leave behind after the mirror is gone (null: no file), from the file as it is now (null: none).
 * Still the bytes main wrote: the original, byte for byte. Changed since (a job step's edit, another job's
 * mirror): the file as it is now without this action's mirror. Gone: gone.
 */
export function restoredConfig(current: Buffer | null, saved: SavedConfig, path: string): Buffer | null {
  if (current === null) return null;
  if (digestOf(current) === saved.written) return saved.original;
  const before = saved.original === null ? undefined : parseDaemonConfig(saved.original.toString('utf8'), path)[MIRRORS_KEY];
  const keepEmptyList = Array.isArray(before) && before.length === 0;
  const outcome = `it was changed during the job and left as it is, so it may still name the mirror ${saved.mirror}, which is gone; take it out of "${MIRRORS_KEY}" and reload dockerd`;
  const text = current.toString('utf8');
  const result = withoutMirror(text, saved.mirror, path, keepEmptyList, outcome);
  return result === text ? current : Buffer.from(result); // nothing of ours in it: its bytes, even ones UTF-8 would not keep
}

/**
 * The config to reload before the final one is written, when that does not name registry-mirrors:
 * dockerd keeps its live mirrors when the key is merely absent on reload, so the list is cleared explicitly.
 */
export function clearingMirrors(config: string | null, path: string): string | null {
  const parsed = parseDaemonConfig(config ?? '', path);
  if (parsed[MIRRORS_KEY] != null) return null;
  return `${JSON.stringify({ ...parsed, [MIRRORS_KEY]: [] }, null, 2)}\n`;
}

/** True when dockerd's live mirror list (as `docker info` shows it, with a trailing slash) holds `mirror`. */
export function mirrorIsLive(liveMirrors: string[], mirror: string): boolean {
  return liveMirrors.some((m) => sameMirror(m, mirror));
}

/** Whether the config's text lists `mirror` in registry-mirrors; text that is not a config is searched for the URL. */
export function namesMirror(config: string, mirror: string): boolean {
  try {
    const listed = parseDaemonConfig(config, '')[MIRRORS_KEY] as string[] | null | undefined;
    return mirrorIsLive(listed ?? [], mirror);
  } catch {
    return config.includes(mirror);
  }
}

/** How many of a config's other mirrors main asks whether they are another job's: each costs a request. */
const OTHER_MIRRORS_ASKED = 16;

/**
 * The mirrors the config lists besides `mirror` that may be another job's of this action: plain HTTP, as the
 * action's are (an https:// one is the user's). None for a config that cannot be read.
 */
export function otherMirrors(config: string | null, mirror: string): string[] {
  let listed: unknown;
  try {
    listed = parseDaemonConfig(config ?? '', '')[MIRRORS_KEY];
  } catch {
    return [];
  }
  return ((listed as string[] | null | undefined) ?? [])
    .filter((m) => m.startsWith('http://') && !sameMirror(m, mirror))
    .map((m) => m.replace(/\/+$/, ''))
    .slice(0, OTHER_MIRRORS_ASKED);
}

function sameMirror(listed: string, mirror: string): boolean {
  return listed.replace(/\/+$/, '') === mirror;
}

/**
 * Whether dockerd keeps its images in containerd (the containerd image store, `docker info` DriverStatus
 * driver-type io.containerd.snapshotter.v1): it then resolves every registry through containerd, which reads
 * per-registry mirrors from CERTS_DIR/HOST/hosts.toml.
 */
export function usesContainerdStore(driverStatus: unknown): boolean {
  return (
    Array.isArray(driverStatus) &&
    driverStatus.some((pair) => Array.isArray(pair) && pair[0] === 'driver-type' && String(pair[1]).startsWith('io.containerd.snapshotter'))
  );
}

/** Which parts of dockerd read CERTS_DIR/HOST/hosts.toml, the per-registry mirrors of every registry but Docker Hub. */
export interface HostsTomlReaders {
  /** `docker pull`, `run`, compose: with the containerd image store only (the classic store's pulls mirror Docker Hub alone). */
  pulls: boolean;
  /** The built-in BuildKit's FROM lines: from Docker Engine 28.0 on, whatever the store (moby daemon/hosts.go). */
  buildkit: boolean;
}

const BUILDKIT_READS_HOSTS_TOML_SINCE = 28;

/** Who in dockerd reads hosts.toml, from `docker info`'s DriverStatus and ServerVersion. */
export function hostsTomlReaders(driverStatus: unknown, serverVersion: string): HostsTomlReaders {
  const release = engineRelease(serverVersion);
  return { pulls: usesContainerdStore(driverStatus), buildkit: !!release && release[0] >= BUILDKIT_READS_HOSTS_TOML_SINCE };
}

// Where things are in a JSON text that JSON.parse accepted: offsets of an object's or array's items, for edits
// that leave every other byte alone. Insertion puts `WS ITEM,` right after the opening bracket (WS copied from
// the first item); removal of a first item takes exactly that back out, so the two undo each other.

interface Item {
  /** Where the item starts (an object member's key) and its value ends. */
  start: number;
  end: number;
  key?: string;
  value: { start: number; end: number };
  /** The comma after the item; -1 for the last one. */
  comma: number;
}

interface Container {
  /** Offsets of the opening and closing bracket. */
  open: number;
  close: number;
  items: Item[];
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  return i;
}

/** The offset just past the JSON value starting at i. */
function valueEnd(text: string, i: number): number {
  if (text[i] === '"') {
    let j = i + 1;
    while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
    return j + 1;
  }
  if (text[i] === '{' || text[i] === '[') return containerAt(text, i).close + 1;
  let j = i;
  while (j < text.length && !',]} \t\n\r'.includes(text[j])) j++;
  return j;
}

function containerAt(text: string, open: number): Container {
  const isObject = text[open] === '{';
  const items: Item[] = [];
  let i = skipSpace(text, open + 1);
  if (text[i] === (isObject ? '}' : ']')) return { open, close: i, items };
  for (;;) {
    const start = i;
    let key: string | undefined;
    if (isObject) {
      const keyEnd = valueEnd(text, i);
      key = JSON.parse(text.slice(i, keyEnd)) as string;
      i = skipSpace(text, skipSpace(text, keyEnd) + 1); // past the colon
    }
    const end = valueEnd(text, i);
    const after = skipSpace(text, end);
    const comma = text[after] === ',' ? after : -1;
    items.push({ start, end, key, value: { start: i, end }, comma });
    if (comma < 0) return { open, close: after, items };
    i = skipSpace(text, comma + 1);
  }
}

/** The member JSON.parse reads for `key` (the last one, should the key be given twice). */
function lastMember(object: Container, key: string): Item | undefined {
  return object.items.filter((m) => m.key === key).at(-1);
}

function splice(text: string, from: number, to: number, insert = ''): string {
  return text.slice(0, from) + insert + text.slice(to);
}

function withFirstItem(text: string, container: Container, item: string): string {
  const lead = text.slice(container.open + 1, container.items[0].start);
  return splice(text, container.open + 1, container.open + 1, `${lead}${item},`);
}

function withoutItem(text: string, container: Container, index: number): string {
  const { items } = container;
  if (items.length === 1) return splice(text, container.open + 1, container.close);
  if (index === items.length - 1) return splice(text, items[index - 1].end, items[index].end);
  return splice(text, index === 0 ? container.open + 1 : items[index - 1].comma + 1, items[index].comma + 1);
}

/** Takes every listing of `mirror` out of the registry-mirrors list, one at a time. */
function removeMirrorItems(text: string, mirror: string): { text: string; removed: boolean; emptied: boolean } {
  let removed = false;
  for (;;) {
    const member = lastMember(containerAt(text, text.indexOf('{')), MIRRORS_KEY);
    if (!member || text[member.value.start] !== '[') return { text, removed, emptied: false };
    const list = containerAt(text, member.value.start);
    const index = list.items.findIndex((item) => sameMirror(JSON.parse(text.slice(item.start, item.end)) as string, mirror));
    if (index < 0) return { text, removed, emptied: list.items.length === 0 };
    text = withoutItem(text, list, index);
    removed = true;
  }
}
