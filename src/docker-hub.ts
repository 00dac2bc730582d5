// Talking to the upstream the way Docker Hub expects: the Bearer challenge of /v2/, tokens from its realm,
// and HEAD requests (which cost no pull) to check credentials, read the pull quota, and tell public
// repositories from private ones.
export interface Credentials {
  username: string;
  password: string;
}

export interface Challenge {
  realm: string;
  service: string;
}

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** The realm and service of a `WWW-Authenticate: Bearer ...` header; null for anything else. */
export function parseChallenge(header: string | null): Challenge | null {
  if (!header || !/^bearer\s/i.test(header)) return null;
  const params = Object.fromEntries([...header.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1].toLowerCase(), m[2]]));
  return params.realm ? { realm: params.realm, service: params.service ?? '' } : null;
}

/**
 * Whether credentials may go to the token realm an upstream's challenge names: over https, or on the upstream's own
 * origin (a plain-http mirror the user named). Any other realm would get them in the clear, or on a host the user
 * never named.
 */
export function realmTakesCredentials(realm: string, upstream: string): boolean {
  try {
    const url = new URL(realm);
    return url.protocol === 'https:' || url.origin === new URL(upstream).origin;
  } catch {
    return false;
  }
}

/** Redirects a token request with credentials follows, each to the realm's own origin. */
const MAX_TOKEN_REDIRECTS = 3;

export interface Quota {
  limit: number;
  remaining: number;
  /** Seconds of the window, 21600 on Docker Hub. */
  window: number;
}

/** Docker Hub's `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600`; null when absent (no limit applies). */
export function parseQuota(limit: string | null, remaining: string | null): Quota | null {
  const l = /^(\d+)(?:;w=(\d+))?/.exec(limit ?? '');
  const r = /^(\d+)/.exec(remaining ?? '');
  return l && r ? { limit: Number(l[1]), remaining: Number(r[1]), window: Number(l[2] ?? 0) } : null;
}

export interface UpstreamProbe {
  reachable: boolean;
  /** Whether the upstream's token server took the credentials; 'anonymous' when none were given. */
  credentials: 'accepted' | 'refused' | 'anonymous' | 'unchecked';
}

/** Whether the upstream answers, and whether it takes the credentials (a token request costs no pull). */
export async function probeUpstream(
  upstream: string,
  credentials: Credentials | null,
  scope = 'repository:ratelimitpreview/test:pull',
  timeoutMs = 5_000,
): Promise<UpstreamProbe> {
  let challenge: Challenge | null;
  try {
    challenge = await challengeOf(upstream, timeoutMs);
  } catch {
    return { reachable: false, credentials: 'unchecked' };
  }
  if (!credentials) return { reachable: true, credentials: 'anonymous' };
  if (!challenge) return { reachable: true, credentials: 'unchecked' };
  const status = (await requestToken(upstream, challenge, scope, credentials, timeoutMs).catch(() => null))?.status;
  return { reachable: true, credentials: status === 200 ? 'accepted' : status === 401 || status === 403 ? 'refused' : 'unchecked' };
}

/** The pull quota left for these credentials (or anonymous), read with a HEAD, which Docker Hub does not count. */
export async function readQuota(upstream: string, credentials: Credentials | null, timeoutMs = 5_000): Promise<Quota | 'unlimited' | null> {
  try {
    const res = await headManifest(upstream, 'ratelimitpreview/test', 'latest', credentials, timeoutMs);
    if (res.status !== 200) return null;
    return parseQuota(res.headers.get('ratelimit-limit'), res.headers.get('ratelimit-remaining')) ?? 'unlimited';
  } catch {
    return null;
  }
}

/** What the upstream answers to a manifest HEAD: its status and the digest it names; null when it cannot be asked. */
export async function manifestHead(
  upstream: string,
  repository: string,
  reference: string,
  credentials: Credentials | null,
  timeoutMs = 5_000,
): Promise<{ status: number; digest: string } | null> {
  try {
    const res = await headManifest(upstream, repository, reference, credentials, timeoutMs);
    return { status: res.status, digest: res.headers.get('docker-content-digest') ?? '' };
  } catch {
    return null;
  }
}

async function challengeOf(upstream: string, timeoutMs: number): Promise<Challenge | null> {
  const res = await fetch(`${upstream}/v2/`, { signal: AbortSignal.timeout(timeoutMs) });
  await res.arrayBuffer();
  return res.status === 401 ? parseChallenge(res.headers.get('www-authenticate')) : null;
}

/**
 * A token from the challenge's realm. Credentials go only to a realm realmTakesCredentials allows, and follow a
 * redirect only to the realm's own origin: a redirect elsewhere is answered as it is, and gets no token.
 */
async function requestToken(
  upstream: string,
  challenge: Challenge,
  scope: string,
  credentials: Credentials | null,
  timeoutMs: number,
): Promise<{ status: number; token: string }> {
  if (credentials && !realmTakesCredentials(challenge.realm, upstream))
    throw new Error(`the token realm ${challenge.realm} is neither https nor on ${upstream}: the credentials are not sent to it`);
  let url = new URL(challenge.realm);
  if (challenge.service) url.searchParams.set('service', challenge.service);
  if (scope) url.searchParams.set('scope', scope);
  const headers: Record<string, string> = credentials
    ? { authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}` }
    : {};
  const signal = AbortSignal.timeout(timeoutMs);
  let res = await fetch(url, { headers, signal, redirect: 'manual' });
  for (let hops = 0; hops < MAX_TOKEN_REDIRECTS && res.status >= 300 && res.status < 400 && res.headers.has('location'); hops++) {
    const next = new URL(res.headers.get('location')!, url);
    if (credentials && next.origin !== url.origin) break;
    await res.arrayBuffer();
    url = next;
    res = await fetch(url, { headers, signal, redirect: 'manual' });
  }
  const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string };
  return { status: res.status, token: body.token ?? body.access_token ?? '' };
}

async function headManifest(
  upstream: string,
  repository: string,
  reference: string,
  credentials: Credentials | null,
  timeoutMs: number,
): Promise<Response> {
  const challenge = await challengeOf(upstream, timeoutMs);
  const headers: Record<string, string> = { accept: MANIFEST_TYPES };
  if (challenge) {
    const { token } = await requestToken(upstream, challenge, `repository:${repository}:pull`, credentials, timeoutMs);
    if (token) headers.authorization = `Bearer ${token}`;
  }
  const res = await fetch(`${upstream}/v2/${repository}/manifests/${reference}`, {
    method: 'HEAD',
    headers,
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.arrayBuffer();
  return res;
}
