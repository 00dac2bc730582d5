// SHA-256, by which the action checks what it did not write itself: blobs against their digests, the registry
// tarball against its pinned hash, daemon.json against what main wrote; and by which it names cache entries.
import { createHash } from 'node:crypto';

/** SHA-256 (hex) of bytes in memory. */
export function sha256Hex(bytes: string | Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** SHA-256 (hex) of a stream's bytes, a chunk at a time: a blob can run to gigabytes. */
export async function streamSha256Hex(chunks: AsyncIterable<Buffer>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of chunks) hash.update(chunk);
  return hash.digest('hex');
}
