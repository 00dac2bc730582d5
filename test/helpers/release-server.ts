// A stand-in for GitHub's release downloads: serves, for each release in REGISTRY_RELEASES, a tarball shaped like
// distribution's official one (registry, README.md, LICENSE at its root) holding the binary the tests run as that
// release. The tarballs are made once per binary and kept beside the Go builds: gzip of a 55 MB binary costs seconds.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { GO_TOOLS_DIR } from './go-tools.js';
import { REGISTRY_RELEASES, REGISTRY_UNDER_TEST } from './registry-under-test.js';

export interface ReleaseServer {
  /** What the registry-download-url input takes. */
  baseUrl: string;
  /** The release under test (registry-under-test.ts), and its tarball's SHA-256 (what registry-sha256 takes). */
  version: string;
  sha256: string;
  /** The SHA-256 of another release's tarball. */
  sha256Of(version: string): string;
  /** Paths requested so far. */
  requests: string[];
  stop(): Promise<void>;
}

const ARCH = process.arch === 'arm64' ? 'arm64' : 'amd64';

/** The tarball file name of a release, as distribution publishes it. */
export function releaseFile(version: string, arch = ARCH): string {
  return `registry_${version}_linux_${arch}.tar.gz`;
}

/** A release's tarball, made once for the binary as it is now (its size and mtime name it). */
function tarball(version: string): Buffer {
  const binary = REGISTRY_RELEASES[version].binary();
  const { size, mtimeMs } = statSync(binary);
  const dir = join(GO_TOOLS_DIR, 'release-tarballs');
  const file = join(dir, `${version}-${size}-${Math.round(mtimeMs)}.tar.gz`);
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    const content = mkdtempSync(join(dir, 'content-'));
    try {
      copyFileSync(binary, join(content, 'registry'));
      writeFileSync(join(content, 'README.md'), `Distribution registry ${version} (test release)\n`);
      writeFileSync(join(content, 'LICENSE'), 'Apache-2.0\n');
      // Renamed into place: a file under the final name is always whole, whichever test process made it.
      execFileSync('tar', ['-czf', join(content, 'release.tar.gz'), '-C', content, 'registry', 'README.md', 'LICENSE']);
      renameSync(join(content, 'release.tar.gz'), file);
    } finally {
      rmSync(content, { recursive: true, force: true });
    }
  }
  return readFileSync(file);
}

export async function startReleaseServer(): Promise<ReleaseServer> {
  const tarballs = new Map<string, Buffer>();
  const get = (version: string) => {
    if (!tarballs.has(version)) tarballs.set(version, tarball(version));
    return tarballs.get(version)!;
  };
  const sha256Of = (version: string) => createHash('sha256').update(get(version)).digest('hex');
  const paths = new Map(Object.keys(REGISTRY_RELEASES).map((v) => [`/v${v}/${releaseFile(v)}`, v]));
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const version = paths.get(req.url ?? '');
    if (version) res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': get(version).length }).end(get(version));
    else res.writeHead(404).end('not found');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    version: REGISTRY_UNDER_TEST.version,
    sha256: sha256Of(REGISTRY_UNDER_TEST.version),
    sha256Of,
    requests,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
