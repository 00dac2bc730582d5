// What the main step hands to the post step. Each stage records what it set up as soon as it has done so,
// so that a post step after a main step that stopped half-way undoes exactly what was done.
import * as core from '@actions/core';

/** One registry's mirror: a Distribution proxy this action started. */
export interface MirrorState {
  /** The registry host, as image names spell it (docker.io, ghcr.io, ...). */
  registry: string;
  upstream: string;
  pid: number;
  /** http://ADDRESS:PORT */
  url: string;
  configPath: string;
  accessLog: string;
  /** Started without proxy: the upstream could not be reached. */
  offline: boolean;
  /** The user the proxy pulls as; empty for anonymous. */
  pullsAs: string;
}

export interface DaemonState {
  configPath: string;
  /** The file as it was, base64 of its bytes; null when there was none. */
  original: string | null;
  /** SHA-256 (hex) of the bytes main wrote: while the file still has them, post puts `original` back as it was. */
  written: string;
  pid: number;
  /** The mirror URL this action added. */
  mirror: string;
}

/** A hosts.toml the action wrote into the daemon's certs.d (containerd image store, or Docker Engine 28 and later). */
export interface RegistryHostsFile {
  registry: string;
  file: string;
  /** Whether the action made the HOST directory too (removed with the file). */
  createdDir: boolean;
  /** Only dockerd's built-in BuildKit reads it (classic image store): `docker pull` of the registry goes around it. */
  buildkitOnly?: boolean;
}

/** The registries.conf drop-in written for Podman, Buildah and Skopeo. */
export interface RegistriesConfState {
  file: string;
  /** Directories made for it, deepest first: removed with it while empty. */
  createdDirs: string[];
}

export interface PrefetchState {
  pid: number;
  log: string;
  /** When main started (epoch ms): containers created since then are the job's. */
  jobStarted: number;
}

export interface RestoreState {
  pid: number;
  progress: string;
  /** Epoch ms: the worker stops itself timeoutMs after. */
  started: number;
  timeoutMs: number;
}

export interface CacheState {
  workDir: string;
  restoredKey: string;
}

function read<T>(name: string): T | undefined {
  const value = core.getState(name);
  return value ? (JSON.parse(value) as T) : undefined;
}

function write(name: string, value: unknown): void {
  core.saveState(name, JSON.stringify(value));
}

export const state = {
  get isPost(): boolean {
    return core.getState('isPost') === 'true';
  },
  markMainStarted: () => core.saveState('isPost', 'true'),
  cache: () => read<CacheState>('cache'),
  setCache: (value: CacheState) => write('cache', value),
  mirrors: () => read<MirrorState[]>('mirrors') ?? [],
  setMirrors: (value: MirrorState[]) => write('mirrors', value),
  daemon: () => read<DaemonState | null>('daemon') ?? undefined,
  /** null: nothing for post to undo (main put the file back itself). */
  setDaemon: (value: DaemonState | null) => write('daemon', value),
  registryHosts: () => read<RegistryHostsFile[]>('registryHosts') ?? [],
  setRegistryHosts: (value: RegistryHostsFile[]) => write('registryHosts', value),
  registriesConf: () => read<RegistriesConfState>('registriesConf'),
  setRegistriesConf: (value: RegistriesConfState) => write('registriesConf', value),
  restore: () => read<RestoreState>('restore'),
  /** The pid of the mirrors' front (gate.ts), while the cache restores in the background. */
  gate: () => read<number>('gate'),
  setGate: (pid: number) => write('gate', pid),
  setRestore: (value: RestoreState) => write('restore', value),
  prefetch: () => read<PrefetchState>('prefetch'),
  setPrefetch: (value: PrefetchState) => write('prefetch', value),
  /** Why `docker build` with dockerd's own BuildKit goes around the cache on this daemon; empty when it does not. */
  builtInBuildkit: () => core.getState('builtInBuildkit'),
  setBuiltInBuildkit: (notice: string) => core.saveState('builtInBuildkit', notice),
  mainError: () => core.getState('mainError'),
  setMainError: (message: string) => core.saveState('mainError', message),
};
