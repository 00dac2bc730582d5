// daemon.json as text in, text out: what the daemon reads while the mirror is up, and what puts it back.

export const MIRRORS_KEY = 'registry-mirrors';

type DaemonJson = Record<string, unknown>;

/** Parses daemon.json; refuses anything that is not a JSON object, so it is never overwritten blindly. */
export function parseDaemonConfig(text: string, path: string): DaemonJson {
  let value: unknown;
  try {
    value = JSON.parse(text.trim() === '' ? '{}' : text);
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message}); it was left as it is and the mirror was not set`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${path} does not hold a JSON object; it was left as it is and the mirror was not set`);
  }
  const mirrors = (value as DaemonJson)[MIRRORS_KEY];
  if (mirrors != null && !(Array.isArray(mirrors) && mirrors.every((m) => typeof m === 'string'))) {
    throw new Error(`${path} has a "${MIRRORS_KEY}" that is not a list of URLs; it was left as it is and the mirror was not set`);
  }
  return value as DaemonJson;
}

/** The config with `mirror` first in registry-mirrors (tried first), every other key and mirror kept. */
export function withMirror(original: string | null, mirror: string, path: string): string {
  const config = parseDaemonConfig(original ?? '', path);
  const others = ((config[MIRRORS_KEY] as string[] | undefined) ?? []).filter((m) => m.replace(/\/+$/, '') !== mirror);
  return `${JSON.stringify({ ...config, [MIRRORS_KEY]: [mirror, ...others] }, null, 2)}\n`;
}

/**
 * The config to reload before the original goes back, when the original does not name registry-mirrors:
 * dockerd keeps its live mirrors when the key is merely absent on reload, so the list is cleared explicitly.
 */
export function clearingMirrors(original: string | null, path: string): string | null {
  const config = parseDaemonConfig(original ?? '', path);
  if (config[MIRRORS_KEY] != null) return null;
  return `${JSON.stringify({ ...config, [MIRRORS_KEY]: [] }, null, 2)}\n`;
}

/** True when dockerd's live mirror list (as `docker info` shows it, with a trailing slash) holds `mirror`. */
export function mirrorIsLive(liveMirrors: string[], mirror: string): boolean {
  return liveMirrors.some((m) => m.replace(/\/+$/, '') === mirror);
}

/**
 * Whether dockerd keeps its images in containerd (the containerd image store, `docker info` DriverStatus
 * driver-type io.containerd.snapshotter.v1): it then resolves every registry through containerd, which reads
 * per-registry mirrors from CERTS_DIR/HOST/hosts.toml.
 */
export function usesContainerdStore(driverStatus: unknown): boolean {
  return Array.isArray(driverStatus) && driverStatus.some((pair) => Array.isArray(pair) && pair[0] === 'driver-type' && String(pair[1]).startsWith('io.containerd.snapshotter'));
}
