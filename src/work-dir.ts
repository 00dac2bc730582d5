// The action's files on the runner, all under one directory in RUNNER_TEMP that the post step removes. Each use
// of the action gets its own (a random name, recorded in the state): two uses in one job never share one.
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { STORAGE_DIR } from './cache-index.js';
import type { ClientConfigFiles } from './client-config.js';
import { DOCKER_HUB } from './images.js';
import type { Restored } from './persistence.js';
import type { RegistryFiles } from './registry.js';
import type { StorageState } from './storage.js';

export interface WorkDir {
  root: string;
  storage: string;
  /** The files of the proxy of one registry host. */
  registry(host: string): RegistryFiles;
  /** What clients other than dockerd read: containerd's hosts directory, a buildkitd.toml, k3s's registries.yaml. */
  clients: ClientConfigFiles;
  /** What the storage held when the registry started: the baseline for hits and for what is new. */
  before: string;
}

/** The prefix of the work directory's name in RUNNER_TEMP. */
export const WORK_DIR_PREFIX = 'pull-cache-action-';

/** The layout of the work directory at root. */
export function workDir(root: string): WorkDir {
  return {
    root,
    storage: join(root, STORAGE_DIR),
    registry: (host) => {
      const suffix = host === DOCKER_HUB ? '' : `-${host.replace(/:/g, '_')}`;
      return {
        config: join(root, `registry${suffix}.yml`),
        accessLog: join(root, `access${suffix}.log`),
        log: join(root, `registry${suffix}.log`),
      };
    },
    clients: {
      hostsDir: join(root, 'hosts.d'),
      buildkitdConfig: join(root, 'buildkitd.toml'),
      k3sRegistries: join(root, 'k3s-registries.yaml'),
    },
    before: join(root, 'before.json'),
  };
}

/** Makes a new work directory (mode 0700) in RUNNER_TEMP. */
export async function createWorkDir(): Promise<WorkDir> {
  const dir = workDir(await mkdtemp(join(process.env.RUNNER_TEMP || tmpdir(), WORK_DIR_PREFIX)));
  await mkdir(dir.storage, { recursive: true });
  return dir;
}

export interface Baseline {
  /** When the main step started (epoch ms): what dockerd pulled since is the job's. */
  started: number;
  restored: Restored;
  storage: StorageState;
}

export async function writeBaseline(dir: WorkDir, baseline: Baseline): Promise<void> {
  await writeFile(dir.before, JSON.stringify(baseline));
}

export async function readBaseline(dir: WorkDir): Promise<Baseline> {
  return JSON.parse(await readFile(dir.before, 'utf8')) as Baseline;
}
