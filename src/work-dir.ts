// The action's files on the runner, all under one directory in RUNNER_TEMP that the post step removes.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { STORAGE_DIR } from './cache-index.js';
import type { Restored } from './persistence.js';
import type { RegistryFiles } from './registry.js';
import type { StorageState } from './storage.js';

export interface WorkDir {
  root: string;
  storage: string;
  registry: RegistryFiles;
  /** What the storage held when the registry started: the baseline for hits and for what is new. */
  before: string;
}

export function workDir(root = join(process.env.RUNNER_TEMP || tmpdir(), 'pull-cache-action')): WorkDir {
  return {
    root,
    storage: join(root, STORAGE_DIR),
    registry: { config: join(root, 'registry.yml'), accessLog: join(root, 'access.log'), log: join(root, 'registry.log') },
    before: join(root, 'before.json'),
  };
}

export async function createWorkDir(dir: WorkDir): Promise<void> {
  await mkdir(dir.storage, { recursive: true });
}

export interface Baseline {
  restored: Restored;
  storage: StorageState;
}

export async function writeBaseline(dir: WorkDir, baseline: Baseline): Promise<void> {
  await writeFile(dir.before, JSON.stringify(baseline));
}

export async function readBaseline(dir: WorkDir): Promise<Baseline> {
  return JSON.parse(await readFile(dir.before, 'utf8')) as Baseline;
}
