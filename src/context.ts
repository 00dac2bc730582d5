// The action's inputs, read once and checked, so every later stage works with typed values.
import * as core from '@actions/core';
import { accessSync, constants, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Credentials } from './docker-hub.js';
import { DOCKERD_CONFIG } from './daemon-config.js';
import { DOCKER_HUB, DOCKER_HUB_ALIASES, DOCKER_HUB_API, isRegistryHost } from './images.js';
import { InputError } from './input-error.js';
import { releaseAsset, type Arch } from './registry-release.js';

export type Listen = 'loopback' | 'docker-bridge';

export interface Inputs {
  dockerhubUsername: string;
  dockerhubToken: string;
  /** Docker Hub's registry API (a stand-in's, in tests). */
  upstream: string;
  /** The registries to cache, by host as image names spell them (docker.io, ghcr.io, ...). */
  registries: string[];
  /** The upstream a registry's mirror pulls from when it is not the registry itself (an organisation's mirror), by host. */
  registryUpstreams: Record<string, string>;
  /** Credentials for registries other than Docker Hub, by host. */
  registryCredentials: Record<string, Credentials>;
  /** Where the mirrors listen: loopback, or the Docker bridge's gateway, which containers reach too. */
  listen: Listen;
  cacheKey: string;
  save: boolean;
  /** Save content of repositories anonymous users cannot pull (readable by forks' pull requests). */
  cachePrivate: boolean;
  /** Bytes restored at most; 0 for no limit. */
  maxSize: number;
  /** Days an image may go unused before it leaves the cache; 0 for no limit. */
  maxAgeDays: number;
  /** Seconds the restore, and the save, may take before the action moves on without them. */
  cacheTimeoutSeconds: number;
  /** Pull what the last run pulled in the background, right after the mirror is up. */
  prefetch: boolean;
  prefetchConcurrency: number;
  registryVersion: string;
  registrySha256: string;
  registryDownloadUrl: string;
  registryPath: string;
  /** The config file of the dockerd to point at the mirror; null (`none`): a daemon the action may not touch. */
  daemonConfig: string | null;
  /** Directory of the registries.conf drop-in for Podman, Buildah, Skopeo: '' for the default, null for none. */
  registriesConfDir: string | null;
  /** 0 means: pick a free loopback port. */
  port: number;
  failOnError: boolean;
  /** A token that may delete this repository's cache entries (actions: write): post prunes with it; empty for none. */
  githubToken: string;
}

export const DEFAULTS = {
  upstream: DOCKER_HUB_API,
  cacheKey: 'pull-cache',
  maxSize: '2GiB',
  maxAge: '7d',
  cacheTimeout: '300',
  registryVersion: '3.1.1',
  registryDownloadUrl: 'https://github.com/distribution/distribution/releases/download',
  daemonConfig: DOCKERD_CONFIG,
} as const;

/** Parses the inputs as `read(name)` gives them (the trimmed text of `with:`, empty when unset). */
export function parseInputs(read: (name: string) => string): Inputs {
  const text = (name: string, fallback = '') => read(name).trim() || fallback;
  const username = text('dockerhub-username');
  const token = text('dockerhub-token');
  if (token && !username)
    throw new InputError('dockerhub-token is set but dockerhub-username is empty: give both, or neither for anonymous pulls');
  if (username && !token)
    throw new InputError('dockerhub-username is set but dockerhub-token is empty: give both, or neither for anonymous pulls');
  const parsed = {
    dockerhubUsername: username,
    dockerhubToken: token,
    upstream: httpUrl('upstream', text('upstream', DEFAULTS.upstream)),
    ...registries(text('registries', DOCKER_HUB)),
    registryCredentials: {},
    listen: listen(text('listen', 'loopback')),
    cacheKey: cacheKeyPrefix(text('cache-key', DEFAULTS.cacheKey)),
    save: boolean('save', read('save'), true),
    cachePrivate: boolean('cache-private', read('cache-private'), false),
    maxSize: size('max-size', text('max-size', DEFAULTS.maxSize)),
    maxAgeDays: days('max-age', text('max-age', DEFAULTS.maxAge)),
    cacheTimeoutSeconds: seconds('cache-timeout', text('cache-timeout', DEFAULTS.cacheTimeout)),
    prefetch: boolean('prefetch', read('prefetch'), true),
    prefetchConcurrency: concurrency('prefetch-concurrency', text('prefetch-concurrency')),
    registryVersion: version(text('registry-version', DEFAULTS.registryVersion)),
    registrySha256: sha256('registry-sha256', text('registry-sha256')),
    registryDownloadUrl: httpUrl('registry-download-url', text('registry-download-url', DEFAULTS.registryDownloadUrl)),
    registryPath: text('registry-path'),
    daemonConfig: daemonConfig(text('daemon-config', DEFAULTS.daemonConfig)),
    registriesConfDir: registriesConfDir(text('registries-conf-d')),
    port: port(text('port')),
    failOnError: boolean('fail-on-error', read('fail-on-error'), false),
    githubToken: githubToken(text('github-token')),
  };
  return { ...parsed, registryCredentials: registryCredentials(read('registry-credentials'), parsed.registries) };
}

/** Reads the inputs from the runner's INPUT_* variables and masks the token before anything can log it. */
export function getInputs(): Inputs {
  const token = core.getInput('dockerhub-token');
  if (token) core.setSecret(token);
  const githubToken = core.getInput('github-token');
  if (githubToken) core.setSecret(githubToken);
  for (const secret of credentialSecrets(core.getInput('registry-credentials'))) core.setSecret(secret);
  const inputs = parseInputs((name) => core.getInput(name));
  checkOnRunner(inputs);
  return inputs;
}

/** What can only be checked on the runner: the paths, and a checksum for the registry to download. */
function checkOnRunner(inputs: Inputs): void {
  if (inputs.daemonConfig && statSync(inputs.daemonConfig, { throwIfNoEntry: false })?.isDirectory()) {
    throw new InputError(`daemon-config ${inputs.daemonConfig} is a directory: give the path of the daemon's JSON config file`);
  }
  if (inputs.registryPath) {
    try {
      accessSync(inputs.registryPath, constants.X_OK);
      if (!statSync(inputs.registryPath).isFile()) throw new Error('not a file');
    } catch {
      throw new InputError(`registry-path ${inputs.registryPath} is not an executable file`);
    }
  } else {
    releaseAsset(inputs.registryVersion, runnerArch(), inputs.registryDownloadUrl, inputs.registrySha256);
  }
}

/** fail-on-error alone, so that a mistake in another input still honours it. */
export function failOnErrorInput(): boolean {
  try {
    return boolean('fail-on-error', core.getInput('fail-on-error'), false);
  } catch {
    return false;
  }
}

export function runnerArch(arch = process.arch): Arch {
  if (arch === 'x64') return 'amd64';
  if (arch === 'arm64') return 'arm64';
  throw new Error(`runner architecture ${arch} is not supported: the registry is released for x64 (amd64) and arm64 only`);
}

function boolean(name: string, value: string, fallback: boolean): boolean {
  const v = value.trim().toLowerCase();
  if (v === '') return fallback;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new InputError(`${name} must be true or false, got "${value.trim()}"`);
}

function httpUrl(name: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InputError(`${name} must be an http:// or https:// URL, got "${value}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InputError(`${name} must be an http:// or https:// URL, got "${value}"`);
  if (url.username || url.password) throw new InputError(`${name} must not carry credentials in the URL, where logs would show them`);
  return value.replace(/\/+$/, '');
}

const MAX_REGISTRIES = 10;

/**
 * Hosts separated by commas, spaces or new lines; Docker Hub by any of its names is docker.io. HOST=URL names the
 * upstream the host's mirror pulls from instead of the registry itself: an organisation's mirror of it.
 */
function registries(value: string): { registries: string[]; registryUpstreams: Record<string, string> } {
  const out: string[] = [];
  const upstreams: Record<string, string> = {};
  for (const item of value.split(/[\s,]+/).filter(Boolean)) {
    const [host, upstream] = item.includes('=')
      ? [item.slice(0, item.indexOf('=')).toLowerCase(), item.slice(item.indexOf('=') + 1)]
      : [item.toLowerCase(), null];
    const name = DOCKER_HUB_ALIASES.includes(host) ? DOCKER_HUB : host;
    if (!isRegistryHost(name))
      throw new InputError(
        `registries: "${host}" is not a registry host; give hosts as image names spell them, such as docker.io, ghcr.io, quay.io, registry.k8s.io`,
      );
    if (out.includes(name)) throw new InputError(`registries: ${name} is listed twice`);
    if (upstream !== null && name === DOCKER_HUB)
      throw new InputError(`registries: give Docker Hub's upstream (${upstream}) as the upstream input, not as docker.io=URL`);
    if (upstream !== null) upstreams[name] = httpUrl(`registries: the upstream of ${name}`, upstream);
    out.push(name);
  }
  if (!out.length) throw new InputError('registries must name at least one registry host, such as docker.io');
  if (out.length > MAX_REGISTRIES) throw new InputError(`registries: at most ${MAX_REGISTRIES} registries, got ${out.length}`);
  return { registries: out, registryUpstreams: upstreams };
}

/** The tokens of registry-credentials (HOST=USERNAME:TOKEN lines), to mask before anything is parsed or logged. */
export function credentialSecrets(value: string): string[] {
  return (
    value
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean)
      // A line of another shape is masked whole after the host: it may be a token alone.
      .map((line) => /^[^=\s]+\s*=\s*[^:\s]+:(.+)$/.exec(line)?.[1].trim() ?? line.replace(/^[^=]*=/, '').trim())
      .filter(Boolean)
  );
}

/** One HOST=USERNAME:TOKEN per line, each host one of `listed` other than docker.io. Messages never quote a token. */
function registryCredentials(value: string, listed: string[]): Record<string, Credentials> {
  const out: Record<string, Credentials> = {};
  value
    .split('\n')
    .map((line) => line.trim())
    .forEach((line, i) => {
      if (!line) return;
      const m = /^([^=\s]+)\s*=\s*([^:\s]+):(.+)$/.exec(line);
      if (!m)
        throw new InputError(
          `registry-credentials line ${i + 1} must be HOST=USERNAME:TOKEN, such as ghcr.io=\${{ github.actor }}:\${{ secrets.GITHUB_TOKEN }}`,
        );
      const host = m[1].toLowerCase();
      if (DOCKER_HUB_ALIASES.includes(host))
        throw new InputError(`registry-credentials line ${i + 1}: give Docker Hub's credentials as dockerhub-username and dockerhub-token`);
      if (!listed.includes(host))
        throw new InputError(`registry-credentials line ${i + 1} names ${host}, which registries does not list (${listed.join(', ')})`);
      if (out[host]) throw new InputError(`registry-credentials: ${host} is given twice`);
      out[host] = { username: m[2], password: m[3].trim() };
    });
  return out;
}

/** Empty, or a token as GitHub issues them (ghs_…, ghp_…, github_pat_…, 40 hex digits). A message never quotes it. */
function githubToken(value: string): string {
  if (value && !/^[A-Za-z0-9_.-]{20,255}$/.test(value))
    throw new InputError(
      "github-token must be a GitHub token (letters, digits, '_', '.' and '-'), such as ${{ github.token }} with permissions: actions: write; the value given is not one (not shown)",
    );
  return value;
}

function listen(value: string): Listen {
  if (value === 'loopback' || value === 'docker-bridge') return value;
  throw new InputError(
    `listen must be loopback (127.0.0.1: this runner's processes only) or docker-bridge (the Docker bridge's gateway: containers too), got "${value}"`,
  );
}

function cacheKeyPrefix(value: string): string {
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(value)) {
    throw new InputError(`cache-key must be 1 to 100 characters of letters, digits, '.', '_' or '-', got "${value}"`);
  }
  return value;
}

function version(value: string): string {
  const v = value.replace(/^v/, '');
  if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$/.test(v))
    throw new InputError(`registry-version must be a release version such as 3.1.1 or 2.8.3, got "${value}"`);
  return v;
}

function sha256(name: string, value: string): string {
  if (value && !/^[0-9a-f]{64}$/i.test(value))
    throw new InputError(`${name} must be 64 hexadecimal characters (a SHA-256), got "${value}"`);
  return value.toLowerCase();
}

/** A path, or `none`: the daemon is not the action's to touch (a dind sidecar, a remote DOCKER_HOST); it names the mirror itself. */
function daemonConfig(value: string): string | null {
  if (value === 'none') return null;
  if (!value.startsWith('/'))
    throw new InputError(`daemon-config must be an absolute path, or none for a daemon the action may not touch, got "${value}"`);
  return value;
}

/** Empty: the default directory; none: no drop-in. */
function registriesConfDir(value: string): string | null {
  if (value === 'none') return null;
  if (value && !value.startsWith('/'))
    throw new InputError(`registries-conf-d must be an absolute path, empty for the directory your podman reads, or none, got "${value}"`);
  return value;
}

const UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

function size(name: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?$/i.exec(value);
  if (!m) throw new InputError(`${name} must be a size such as 500MiB, 2GiB or 1.5GB (0 for no limit), got "${value}"`);
  const bytes = Math.round(Number(m[1]) * UNITS[(m[2] ?? 'b').toLowerCase()]);
  if (bytes === 0 && Number(m[1]) !== 0) throw new InputError(`${name} must be at least 1 byte, or 0 for no limit; got "${value}"`);
  return bytes;
}

function days(name: string, value: string): number {
  const m = /^(\d{1,4})\s*d?$/i.exec(value);
  if (!m) throw new InputError(`${name} must be a number of days such as 7d (0 for no limit), got "${value}"`);
  return Number(m[1]);
}

function seconds(name: string, value: string): number {
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= 3600)) throw new InputError(`${name} must be a whole number of seconds from 1 to 3600, got "${value}"`);
  return n;
}

/** Empty means: as many as the runner has cores, at least 2 (pulls wait on the network as much as on the CPU). */
function concurrency(name: string, value: string): number {
  if (value === '') return Math.max(2, availableParallelism());
  const n = /^\d{1,2}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= 32))
    throw new InputError(`${name} must be a whole number from 1 to 32, or empty for the runner's core count; got "${value}"`);
  return n;
}

function port(value: string): number {
  if (value === '') return 0;
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= 65535))
    throw new InputError(`port must be a whole number from 1 to 65535, or empty for a free loopback port; got "${value}"`);
  return n;
}
