// The registry binary: the user's own (registry-path), or the official release. Only the release tarball is
// kept in the tool cache, and it is checked against the pinned SHA-256 (or registry-sha256) on every run, hit
// or miss, then unpacked into this job's work directory and run from there. The trust anchor stays in the
// action's own constants: a file beside the tarball recording "the binary's hash" could be rewritten by any
// earlier job on a persistent runner, just like the binary.
import * as core from '@actions/core';
import * as tc from '@actions/tool-cache';
import { access, constants, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runnerArch, type Inputs } from './context.js';
import { warn } from './log.js';
import { commandOutput } from './processes.js';
import { releaseAsset } from './registry-release.js';
import { sha256Hex } from './sha256.js';

const TOOL_NAME = 'distribution-registry';
const TARBALL = 'registry.tar.gz';

/**
 * Returns the path of a registry binary ready to run, unpacked in scratchDir (inside the work directory) from a
 * tarball whose bytes matched the expected SHA-256. A tool-cache copy that does not match is never unpacked: a
 * warning, and a fresh download replaces it.
 */
export async function installRegistry(inputs: Inputs, scratchDir: string): Promise<string> {
  if (inputs.registryPath) return inputs.registryPath;
  const arch = runnerArch();
  const asset = releaseAsset(inputs.registryVersion, arch, inputs.registryDownloadUrl, inputs.registrySha256);
  const cached = tc.find(TOOL_NAME, inputs.registryVersion, arch);
  if (cached) {
    const path = join(cached, TARBALL);
    // The bytes hashed are the bytes unpacked: the tool cache is read once.
    const tarball = await readFile(path).catch(() => null);
    const actual = tarball && sha256Hex(tarball);
    if (tarball && actual === asset.sha256) {
      core.info(`Registry ${inputs.registryVersion} found in the tool cache (SHA-256 checked)`);
      return unpack(tarball, scratchDir, path);
    }
    const expected = `${asset.sha256}${inputs.registrySha256 ? ' (registry-sha256)' : ''}`;
    if (tarball)
      warn(
        `the registry tarball in the tool cache (${path}) has SHA-256 ${actual}, not ${expected}: it is not run; downloading the release again.`,
      );
    else
      core.info(
        `The tool cache's registry ${inputs.registryVersion} has no ${TARBALL} (kept by an older version of this action): downloading it`,
      );
  }
  core.info(`Downloading ${asset.url}`);
  const download = await tc.downloadTool(asset.url, join(scratchDir, 'download.tar.gz'));
  const tarball = await readFile(download);
  const actual = sha256Hex(tarball);
  if (actual !== asset.sha256) throw new Error(`checksum mismatch for ${asset.url}: expected ${asset.sha256}, got ${actual}`);
  await tc
    .cacheFile(download, TARBALL, TOOL_NAME, inputs.registryVersion, arch)
    .catch((e: Error) => core.info(`Could not keep the registry in the tool cache: ${e.message}`));
  return unpack(tarball, scratchDir, asset.url);
}

/** Unpacks checked tarball bytes into scratchDir (this job's own: never a directory another job rewrites). */
async function unpack(tarball: Buffer, scratchDir: string, from: string): Promise<string> {
  const file = join(scratchDir, TARBALL);
  await mkdir(scratchDir, { recursive: true });
  await writeFile(file, tarball, { mode: 0o600 });
  // With the action's own tar (tool-cache's extractTar runs the job's, with the job's environment).
  const extracted = join(scratchDir, 'registry');
  await mkdir(extracted, { recursive: true });
  await commandOutput('tar', ['-x', '-z', '-f', file, '-C', extracted, '--no-same-owner'], { timeout: 60_000 });
  const binary = join(extracted, 'registry');
  await access(binary, constants.X_OK).catch(() => {
    throw new Error(`${from} holds no executable named registry at its root`);
  });
  return binary;
}
