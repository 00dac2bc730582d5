// The official Distribution releases the action can run: where each tarball is and the SHA-256 it must have.
// Both the inputs (a registry-version without a known checksum is refused up front) and the install read it.
import { InputError } from './input-error.js';

/** A release's architecture, as its tarballs name it. */
export type Arch = 'amd64' | 'arm64';

/**
 * SHA-256 of the official release tarballs, as published beside them (.sha256 files); 3.1.1's as the official
 * registry:3 image's Dockerfile checks its download of them.
 */
export const PINNED_SHA256: Record<string, string> = {
  '2.8.3/amd64': 'b1f750ecbe09f38e2143e22c61a25e3da2afe1510d9522859230b480e642ceff',
  '2.8.3/arm64': '7d2252eeeac97dd60fb9b36bebd15b95d7f947c4c82b8e0824cb55233ece9cd0',
  '3.0.0/amd64': '61c9a2c0d5981a78482025b6b69728521fbc78506d68b223d4a2eb825de5ca3d',
  '3.0.0/arm64': '6c2ee1d135626fa42e0d6fb66a0e0f42e22439e5050087d04f4c5ff53655892e',
  '3.1.1/amd64': '6f330a3ba9ea1d23a6ee189f449d792595240585bb2f159123d76ac594f70dd8',
  '3.1.1/arm64': '8167316d2b4a57e10d44f8c8a3c75fea5f3ec1c71872760bb903e5e8e52e9ad6',
};

export interface ReleaseAsset {
  url: string;
  sha256: string;
}

/** Where the release tarball is and the hash it must have. */
export function releaseAsset(version: string, arch: Arch, baseUrl: string, givenSha256: string): ReleaseAsset {
  const sha256 = givenSha256 || PINNED_SHA256[`${version}/${arch}`];
  if (!sha256) {
    const known = [...new Set(Object.keys(PINNED_SHA256).map((k) => k.split('/')[0]))].join(', ');
    throw new InputError(
      `registry-version ${version} has no pinned checksum (known: ${known}): set registry-sha256 to the SHA-256 of registry_${version}_linux_${arch}.tar.gz`,
    );
  }
  return { url: `${baseUrl}/v${version}/registry_${version}_linux_${arch}.tar.gz`, sha256 };
}
