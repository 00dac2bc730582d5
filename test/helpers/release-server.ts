// A stand-in for GitHub's release downloads: serves a tarball shaped like distribution's official
// release (registry, README.md, LICENSE at its root) holding Debian's registry binary.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

export interface ReleaseServer {
  /** What the registry-download-url input takes. */
  baseUrl: string;
  version: string;
  sha256: string;
  /** Paths requested so far. */
  requests: string[];
  stop(): Promise<void>;
}

export async function startReleaseServer(dir: string, version = '2.8.3', arch = process.arch === 'arm64' ? 'arm64' : 'amd64'): Promise<ReleaseServer> {
  const content = join(dir, 'release');
  mkdirSync(content, { recursive: true });
  copyFileSync('/usr/bin/docker-registry', join(content, 'registry'));
  writeFileSync(join(content, 'README.md'), 'Distribution registry (test release)\n');
  writeFileSync(join(content, 'LICENSE'), 'Apache-2.0\n');
  const file = `registry_${version}_linux_${arch}.tar.gz`;
  execFileSync('tar', ['-czf', join(dir, file), '-C', content, 'registry', 'README.md', 'LICENSE']);
  const tarball = readFileSync(join(dir, file));
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.url === `/v${version}/${file}`) res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': tarball.length }).end(tarball);
    else res.writeHead(404).end('not found');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    version,
    sha256: createHash('sha256').update(tarball).digest('hex'),
    requests,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
