// The registry binary: the user's own (registry-path), or the official release through the tool cache,
// checked against a pinned SHA-256 before it is ever run.
import * as core from '@actions/core';
import * as tc from '@actions/tool-cache';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError, runnerArch, type Arch, type Inputs } from './context.js';

const TOOL_NAME = 'distribution-registry';

/** SHA-256 of the official release tarballs, from the .sha256 files published beside them. */
export const PINNED_SHA256: Record<string, string> = {
  '2.8.3/amd64': 'b1f750ecbe09f38e2143e22c61a25e3da2afe1510d9522859230b480e642ceff',
  '2.8.3/arm64': '7d2252eeeac97dd60fb9b36bebd15b95d7f947c4c82b8e0824cb55233ece9cd0',
  '3.0.0/amd64': '61c9a2c0d5981a78482025b6b69728521fbc78506d68b223d4a2eb825de5ca3d',
  '3.0.0/arm64': '6c2ee1d135626fa42e0d6fb66a0e0f42e22439e5050087d04f4c5ff53655892e',
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
    throw new InputError(`registry-version ${version} has no pinned checksum (known: ${known}): set registry-sha256 to the SHA-256 of registry_${version}_linux_${arch}.tar.gz`);
  }
  return { url: `${baseUrl}/v${version}/registry_${version}_linux_${arch}.tar.gz`, sha256 };
}

/** Returns the path of a registry binary ready to run; the download and its unpacking happen in scratchDir (the work directory). */
export async function installRegistry(inputs: Inputs, scratchDir: string): Promise<string> {
  if (inputs.registryPath) return inputs.registryPath;
  const arch = runnerArch();
  const cached = tc.find(TOOL_NAME, inputs.registryVersion, arch);
  if (cached) {
    core.info(`Registry ${inputs.registryVersion} found in the tool cache`);
    return join(cached, 'registry');
  }
  const asset = releaseAsset(inputs.registryVersion, arch, inputs.registryDownloadUrl, inputs.registrySha256);
  core.info(`Downloading ${asset.url}`);
  const tarball = await tc.downloadTool(asset.url, join(scratchDir, 'registry.tar.gz'));
  const actual = await sha256File(tarball);
  if (actual !== asset.sha256) throw new Error(`checksum mismatch for ${asset.url}: expected ${asset.sha256}, got ${actual}`);
  const extracted = await tc.extractTar(tarball, join(scratchDir, 'registry'));
  await access(join(extracted, 'registry'), constants.X_OK).catch(() => {
    throw new Error(`${asset.url} holds no executable named registry at its root`);
  });
  // Cached for the next jobs, but run from this job's own copy: two jobs that both missed the tool cache each
  // rewrite its directory, and one would exec the binary while the other deletes or writes it.
  await tc.cacheDir(extracted, TOOL_NAME, inputs.registryVersion, arch).catch((e: Error) => core.info(`Could not keep the registry in the tool cache: ${e.message}`));
  return join(extracted, 'registry');
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
