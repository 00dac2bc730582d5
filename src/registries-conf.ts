// Podman, Buildah and Skopeo read registries.conf and the drop-ins of registries.conf.d: system-wide in
// /etc/containers (root), per user in ~/.config/containers. The action writes one drop-in naming the mirrors, of a
// name no other use of the action shares, and the post step removes it with the directories it made for it.
import * as core from '@actions/core';
import { mkdir, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { registriesConf, type MirrorAddress } from './client-config.js';
import { warn } from './log.js';
import type { RegistriesConfState } from './state.js';

/** Where the drop-in goes when the registries-conf-d input is empty: the directory the user's podman reads. */
export function defaultRegistriesConfDir(uid: number, home: string): string {
  return uid === 0 ? '/etc/containers/registries.conf.d' : join(home, '.config', 'containers', 'registries.conf.d');
}

/**
 * Writes DIR/pull-cache-action-ID.conf (ID: the work directory's own suffix) and returns what post must remove;
 * `record` has it before the file is written.
 */
async function writeRegistriesConf(
  dir: string,
  workDir: string,
  mirrors: MirrorAddress[],
  record: (s: RegistriesConfState) => void,
): Promise<string> {
  const file = join(dir, `${basename(workDir)}.conf`);
  const createdDirs = await missingDirs(dir);
  record({ file, createdDirs });
  await mkdir(dir, { recursive: true });
  await writeFile(file, registriesConf(mirrors), { mode: 0o644, flag: 'wx' });
  return file;
}

/** Removes the drop-in, then each directory made for it that is still empty (deepest first). */
export async function removeRegistriesConf(conf: RegistriesConfState): Promise<void> {
  await rm(conf.file, { force: true });
  for (const dir of conf.createdDirs) {
    await rmdir(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT' && e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
    });
  }
}

/** dir and those of its parents that do not exist yet, deepest first. */
async function missingDirs(dir: string): Promise<string[]> {
  const missing: string[] = [];
  for (
    let d = dir;
    d !== dirname(d) &&
    !(await stat(d).then(
      () => true,
      () => false,
    ));
    d = dirname(d)
  )
    missing.push(d);
  return missing;
}

/**
 * Points Podman, Buildah and Skopeo at the mirrors with a drop-in in `input`'s directory ('' for the default; null:
 * none wanted) and returns its path. A directory that cannot be written is a warning: those tools pull directly.
 */
export async function useRegistriesConf(
  input: string | null,
  workDir: string,
  mirrors: MirrorAddress[],
  record: (s: RegistriesConfState) => void,
): Promise<string> {
  if (input === null) return '';
  const dir = input || defaultRegistriesConfDir(process.getuid?.() ?? 0, homedir());
  try {
    const file = await writeRegistriesConf(dir, workDir, mirrors, record);
    core.info(`Podman, Buildah and Skopeo now pull ${mirrors.map((m) => m.registry).join(', ')} images through the mirrors (${file})`);
    return file;
  } catch (e) {
    warn(
      `cannot write a registries.conf drop-in in ${dir} (${(e as Error).message}): Podman, Buildah and Skopeo pull directly. Set registries-conf-d to a directory they read, or to none.`,
    );
    return '';
  }
}
