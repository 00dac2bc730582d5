// A real Distribution registry (Debian's docker-registry 2.8.2, or another binary) on loopback: by default a plain
// open registry standing in for Docker Hub; with options a token-auth registry (see hub.ts) or a pull-through proxy. Its stdout is the HTTP
// access log (gorilla/handlers, Apache combined format), its stderr the application log (logrus); they go to
// separate files so the access log can be parsed.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { answers, freePort, startProcess, waitFor, type Started } from './process.js';

export const REGISTRY_BINARY = process.env.TEST_REGISTRY_BINARY ?? '/usr/bin/docker-registry';

export interface AccessLogLine {
  method: string;
  /** Request path without the query string, e.g. /v2/library/alpine/blobs/sha256:... */
  path: string;
  /** Query string without '?', '' when there is none. */
  query: string;
  status: number;
  /** Response body bytes written ('-' in the log counts as 0). */
  bytes: number;
  remote: string;
  /** The timestamp as logged, e.g. 29/Nov/2026:19:09:54 +0000. */
  time: string;
  referer: string;
  userAgent: string;
  raw: string;
}

export interface Upstream {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT, the prefix for image references (127.0.0.1:PORT/library/alpine:1). */
  host: string;
  port: number;
  dir: string;
  configFile: string;
  /** Storage root (filesystem driver). */
  storageDir: string;
  accessLogFile: string;
  registryLogFile: string;
  process: Started;
  /**
   * The access log so far. gorilla writes a line after the handler returns, so a line can appear a few
   * milliseconds after the client has the whole response: poll when you need the last requests.
   */
  accessLog(): Promise<AccessLogLine[]>;
  /** GETs of /v2/NAME/blobs/DIGEST (blob downloads), in log order. */
  blobRequests(): Promise<AccessLogLine[]>;
  stop(): Promise<void>;
}

// 127.0.0.1 - - [29/Nov/2026:19:09:54 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
const LINE = /^(\S+) (\S+) (\S+) \[([^\]]+)\] "(\S+) (\S+) ([^"]+)" (\d{3}) (\d+|-)(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?$/;

/** Parses one access-log line (Apache common or combined format); undefined when it is not one. */
export function parseAccessLogLine(raw: string): AccessLogLine | undefined {
  const m = LINE.exec(raw.trimEnd());
  if (!m) return undefined;
  const uri = m[6];
  const q = uri.indexOf('?');
  return {
    remote: m[1],
    time: m[4],
    method: m[5],
    path: q === -1 ? uri : uri.slice(0, q),
    query: q === -1 ? '' : uri.slice(q + 1),
    status: Number(m[8]),
    bytes: m[9] === '-' ? 0 : Number(m[9]),
    referer: m[10] ?? '',
    userAgent: m[11] ?? '',
    raw,
  };
}

/** Parses a whole access log; lines that are not access-log lines are skipped. */
export function parseAccessLog(text: string): AccessLogLine[] {
  const lines: AccessLogLine[] = [];
  for (const raw of text.split('\n')) {
    const line = parseAccessLogLine(raw);
    if (line) lines.push(line);
  }
  return lines;
}

const BLOB_PATH = /^\/v2\/(.+)\/blobs\/([a-z0-9]+:[a-f0-9]+)$/;

/** The repository and digest of a blob request path, or undefined. */
export function blobOf(path: string): { repository: string; digest: string } | undefined {
  const m = BLOB_PATH.exec(path);
  return m ? { repository: m[1], digest: m[2] } : undefined;
}

export interface UpstreamOptions {
  /** The registry's `auth:` block, e.g. { token: { realm, service, issuer, rootcertbundle } }. Default: none (open). */
  auth?: Record<string, unknown>;
  /**
   * More configuration, deep-merged over the defaults (plain objects merge key by key, anything else replaces),
   * e.g. { proxy: { remoteurl, username, password } } for a pull-through cache. http.addr is always ours.
   */
  config?: Record<string, unknown>;
  /** The registry binary (default REGISTRY_BINARY), e.g. a 3.x one from registry-under-test.ts. */
  binary?: string;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    out[key] = isPlainObject(value) && isPlainObject(out[key]) ? deepMerge(out[key] as Record<string, unknown>, value) : value;
  }
  return out;
}

/**
 * Starts a registry on 127.0.0.1:<free port> with its storage, config and logs under dir: open unless
 * opts.auth is given. A registry in proxy mode (opts.config.proxy) GETs REMOTEURL/v2/ at start-up and exits when
 * that fails; the error then carries the tail of its log.
 */
export async function startUpstream(dir: string, opts: UpstreamOptions = {}): Promise<Upstream> {
  await mkdir(dir, { recursive: true });
  const storageDir = join(dir, 'data');
  const configFile = join(dir, 'config.yml');
  const accessLogFile = join(dir, 'access.log');
  const registryLogFile = join(dir, 'registry.log');
  // The port was free a moment ago; another process can take it before the registry binds. Try a few.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const config = deepMerge(
      {
        version: 0.1,
        log: { level: 'info', accesslog: { disabled: false } },
        storage: { filesystem: { rootdirectory: storageDir }, delete: { enabled: true } },
        http: { secret: 'test-upstream-secret' },
        ...(opts.auth ? { auth: opts.auth } : {}),
      },
      opts.config ?? {},
    );
    config.http = { ...(config.http as Record<string, unknown>), addr: `127.0.0.1:${port}` };
    await writeFile(configFile, stringify(config));
    // 3.x exports OpenTelemetry traces to localhost unless told not to; 2.8 ignores the variable.
    const env = { ...process.env, OTEL_TRACES_EXPORTER: 'none' };
    const proc = startProcess(
      opts.binary ?? REGISTRY_BINARY,
      ['serve', configFile],
      { stdout: accessLogFile, stderr: registryLogFile },
      env,
    );
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitFor(`registry on ${url}`, () => answers(`${url}/v2/`), 15_000, 50, proc);
    } catch (error) {
      await proc.stop();
      const log = await readFile(registryLogFile, 'utf8').catch(() => '');
      if (attempt < 3 && /address already in use/.test(log)) continue;
      throw new Error(`${(error as Error).message}; see ${registryLogFile}:\n${log.slice(-2000)}`, { cause: error });
    }
    const accessLog = async () => parseAccessLog(await readFile(accessLogFile, 'utf8'));
    return {
      url,
      host: `127.0.0.1:${port}`,
      port,
      dir,
      configFile,
      storageDir,
      accessLogFile,
      registryLogFile,
      process: proc,
      accessLog,
      blobRequests: async () => (await accessLog()).filter((l) => l.method === 'GET' && blobOf(l.path) !== undefined),
      stop: () => proc.stop(),
    };
  }
}
