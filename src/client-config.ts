// What clients other than dockerd read to pull through the mirrors: containerd's hosts directory (kind,
// nerdctl, ctr), k3s's registries.yaml and a buildkitd.toml for buildx builders. The text is computed here;
// writeClientConfigs puts it on disk.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { DOCKER_HUB, DOCKER_HUB_API } from './images.js';

export interface MirrorAddress {
  /** The registry host, as image names spell it. */
  registry: string;
  /** http://ADDRESS:PORT of its mirror. */
  url: string;
}

/** Where a client goes when the mirror fails: the registry's own API endpoint. */
function registryServer(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API : `https://${registry}`;
}

/** A TOML basic string. */
function toml(text: string): string {
  return JSON.stringify(text);
}

/** containerd's HOSTS_DIR/REGISTRY/hosts.toml: pull and resolve through the mirror, then the registry itself. */
export function hostsToml(mirror: MirrorAddress): string {
  return [
    `# pull-cache-action: ${mirror.registry} images come through the cache on this runner.`,
    `server = ${toml(registryServer(mirror.registry))}`,
    '',
    `[host.${toml(mirror.url)}]`,
    '  capabilities = ["pull", "resolve"]',
    '',
  ].join('\n');
}

/** buildkitd.toml for docker/setup-buildx-action's buildkitd-config: each registry's mirror, spoken to over plain HTTP. */
export function buildkitdToml(mirrors: MirrorAddress[]): string {
  const lines = ['# pull-cache-action: buildx builders pull through the cache on this runner.'];
  for (const mirror of mirrors) lines.push('', `[registry.${toml(mirror.registry)}]`, `  mirrors = [${toml(new URL(mirror.url).host)}]`);
  for (const mirror of mirrors) lines.push('', `[registry.${toml(new URL(mirror.url).host)}]`, '  http = true');
  return `${lines.join('\n')}\n`;
}

/** k3s's /etc/rancher/k3s/registries.yaml (also k3d's --registry-config): each registry's mirror as its endpoint. */
export function k3sRegistriesYaml(mirrors: MirrorAddress[]): string {
  return stringify({ mirrors: Object.fromEntries(mirrors.map((m) => [m.registry, { endpoint: [m.url] }])) });
}

/**
 * A registries.conf drop-in (containers-registries.conf(5), v2) for Podman, Buildah and Skopeo: each registry
 * pulled from its mirror first, spoken to over plain HTTP (`insecure`), then from the registry itself.
 */
export function registriesConf(mirrors: MirrorAddress[]): string {
  const lines = ['# pull-cache-action: Podman, Buildah and Skopeo pull through the cache on this runner; its post step removes this file.'];
  for (const mirror of mirrors) {
    lines.push('', '[[registry]]', `prefix = ${toml(mirror.registry)}`, `location = ${toml(mirror.registry)}`);
    lines.push('', '[[registry.mirror]]', `location = ${toml(new URL(mirror.url).host)}`, 'insecure = true');
  }
  return `${lines.join('\n')}\n`;
}

export interface ClientConfigFiles {
  hostsDir: string;
  buildkitdConfig: string;
  k3sRegistries: string;
}

/** Writes HOSTS_DIR/REGISTRY/hosts.toml for each mirror, the buildkitd.toml and k3s's registries.yaml. */
export async function writeClientConfigs(files: ClientConfigFiles, mirrors: MirrorAddress[]): Promise<void> {
  for (const mirror of mirrors) {
    await mkdir(join(files.hostsDir, mirror.registry), { recursive: true });
    await writeFile(join(files.hostsDir, mirror.registry, 'hosts.toml'), hostsToml(mirror));
  }
  await writeFile(files.buildkitdConfig, buildkitdToml(mirrors));
  await writeFile(files.k3sRegistries, k3sRegistriesYaml(mirrors));
}

/** Removes what writeClientConfigs wrote: a client that reads them on each pull (containerd's hosts directory) goes direct. */
export async function removeClientConfigs(files: ClientConfigFiles): Promise<void> {
  await Promise.all([
    rm(files.hostsDir, { recursive: true, force: true }),
    rm(files.buildkitdConfig, { force: true }),
    rm(files.k3sRegistries, { force: true }),
  ]);
}
