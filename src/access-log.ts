// The registry's access log: which manifests and blobs each client asked its mirror for, and when. The registry's
// own counters are wrong in 2.8, so what the job pulled is counted from this log (see usage.ts).

export interface RegistryRequest {
  /** Epoch milliseconds, to the second. */
  at: number;
  /** The client's User-Agent: dockerd's, naming the API client in UpstreamClient(...). */
  agent: string;
  method: string;
  repository: string;
  kind: 'manifests' | 'blobs';
  reference: string;
  status: number;
}

const REQUEST_LINE =
  /\[([^\]]+)\] "(GET|HEAD) \/v2\/(.+)\/(manifests|blobs)\/([^ ?"]+)[^"]*" (\d{3}) \S+(?: "(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)")?/;
const MONTHS = 'JanFebMarAprMayJunJulAugSepOctNovDec';

/** `29/Nov/2026:19:14:15 +0000`, the access log's time, in epoch milliseconds. */
function logTime(text: string): number {
  const m = /^(\d\d)\/(\w{3})\/(\d{4}):(\d\d:\d\d:\d\d) ([+-]\d\d)(\d\d)$/.exec(text);
  if (!m) return NaN;
  const month = String(MONTHS.indexOf(m[2]) / 3 + 1).padStart(2, '0');
  return Date.parse(`${m[3]}-${month}-${m[1]}T${m[4]}${m[5]}:${m[6]}`);
}

/** Parses the registry's access log (Apache combined format) into the requests for manifests and blobs. */
export function parseAccessLog(text: string): RegistryRequest[] {
  const requests: RegistryRequest[] = [];
  for (const line of text.split('\n')) {
    const m = REQUEST_LINE.exec(line);
    const reference = m && decodeSafely(m[5]);
    if (m && reference)
      requests.push({
        at: logTime(m[1]),
        agent: m[7] ?? '',
        method: m[2],
        repository: m[3],
        kind: m[4] as RegistryRequest['kind'],
        reference,
        status: Number(m[6]),
      });
  }
  return requests;
}

/** A stray request with a broken escape is not a pull: skip it rather than lose the report. */
function decodeSafely(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}
