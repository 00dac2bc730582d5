// The Docker daemon: point it at the mirror by a live reload (never a restart), and put it back as it was.
import * as core from '@actions/core';
import * as exec from '@actions/exec';
import { execFile } from 'node:child_process';
import { access, mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { hostsToml, type MirrorAddress } from './client-config.js';
import { clearingMirrors, mirrorIsLive, usesContainerdStore, withMirror } from './daemon-config.js';
import type { DaemonState, RegistryHostsFile } from './state.js';

const DEFAULT_CONFIG = '/etc/docker/daemon.json';

/** Merges the mirror into the daemon's config and reloads it; undoes its own change if the daemon does not take it. */
export async function useMirror(configPath: string, mirror: string, record: (s: DaemonState) => void): Promise<void> {
  const pid = await findDockerd(configPath);
  const original = await readFile(configPath).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw new Error(`cannot read ${configPath}: ${e.message}`);
  });
  const merged = withMirror(original?.toString('utf8') ?? null, mirror, configPath);
  const daemon: DaemonState = { configPath, original: original?.toString('base64') ?? null, pid, mirror };
  record(daemon);
  await writeAsRoot(configPath, merged);
  try {
    await reload(pid);
    await waitForMirrors(`the mirror to be listed by docker info after reloading dockerd (pid ${pid})`, (live) => mirrorIsLive(live, mirror));
  } catch (e) {
    await restoreDaemon(daemon);
    throw e;
  }
}

/** Puts daemon.json back byte for byte (or removes it when there was none) and reloads, so the mirror is gone. */
export async function restoreDaemon(daemon: DaemonState): Promise<void> {
  const original = daemon.original === null ? null : Buffer.from(daemon.original, 'base64');
  try {
    if (await isRunning(daemon.pid)) {
      // dockerd keeps its live mirrors when the key is merely absent on reload, so when the original does not
      // name registry-mirrors, a copy of it that clears them explicitly is what gets reloaded.
      await writeAsRoot(daemon.configPath, clearingMirrors(original?.toString('utf8') ?? null, daemon.configPath) ?? original!);
      await reload(daemon.pid);
      await waitForMirrors('the mirror to leave docker info', (live) => !mirrorIsLive(live, daemon.mirror));
    }
  } finally {
    if (original === null) await removeAsRoot(daemon.configPath);
    else await writeAsRoot(daemon.configPath, original);
  }
}

/**
 * With the containerd image store, dockerd reads per-registry mirrors from certs.d beside its config file:
 * writes CERTS_DIR/HOST/hosts.toml for each mirror, except where the host already has one (the user's, kept).
 * `record` gets what was written as soon as it is, for post to remove. Nothing with the classic image store.
 */
export async function useRegistryHosts(
  configPath: string,
  mirrors: MirrorAddress[],
  record: (files: RegistryHostsFile[]) => void,
  containerdStore = async () => usesContainerdStore(await dockerInfo('{{json .DriverStatus}}').catch(() => null)),
): Promise<RegistryHostsFile[]> {
  if (!(await containerdStore())) return [];
  const written: RegistryHostsFile[] = [];
  for (const mirror of mirrors) {
    const dir = join(dirname(configPath), 'certs.d', mirror.registry);
    const file = join(dir, 'hosts.toml');
    if (await exists(file)) continue;
    const createdDir = !(await exists(dir));
    await writeAsRoot(file, hostsToml(mirror));
    written.push({ registry: mirror.registry, file, createdDir });
    record(written);
  }
  return written;
}

/** Removes the hosts.toml files useRegistryHosts wrote, and the directories it made for them. */
export async function restoreRegistryHosts(files: RegistryHostsFile[]): Promise<void> {
  for (const { file, createdDir } of files) {
    await removeAsRoot(file);
    if (createdDir) await rmdir(dirname(file)).catch(() => sudo(['rmdir', dirname(file)]));
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

/** The images dockerd pulled since sinceMs, as each pull event names them; empty when the events cannot be read. */
export async function imagesPulledSince(sinceMs: number): Promise<string[]> {
  const args = ['events', '--since', String(Math.floor(sinceMs / 1000)), '--until', String(Math.ceil(Date.now() / 1000)), '--filter', 'type=image', '--filter', 'event=pull', '--format', '{{.Actor.ID}}'];
  const out = await new Promise<string>((resolve) => execFile('docker', args, { timeout: 10_000 }, (e, stdout) => resolve(e ? '' : stdout)));
  return [...new Set(out.split('\n').filter(Boolean))];
}

/** The pid of the dockerd that reads configPath: named by --config-file, or the default path without the flag. */
export async function findDockerd(configPath: string): Promise<number> {
  const wanted = resolve(configPath);
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean);
    if (argv.length === 0 || !/(^|\/)dockerd$/.test(argv[0])) continue;
    if (resolve(configFileOf(argv) ?? DEFAULT_CONFIG) === wanted) return Number(entry);
  }
  throw new Error(`no running dockerd reads ${configPath} (looked for --config-file ${configPath}${wanted === DEFAULT_CONFIG ? ' or none' : ''}); set daemon-config to the file your daemon reads`);
}

/** The --config-file dockerd was started with; like dockerd, the last one given wins. */
export function configFileOf(argv: string[]): string | undefined {
  let file: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === '--config-file') file = argv[i + 1];
    else if (argv[i].startsWith('--config-file=')) file = argv[i].slice('--config-file='.length);
  }
  return file;
}

async function isRunning(pid: number): Promise<boolean> {
  const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return /(^|\/)dockerd\0/.test(argv);
}

async function reload(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGHUP');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw new Error(`cannot signal dockerd (pid ${pid}): ${(e as Error).message}`);
    await sudo(['kill', '-s', 'HUP', String(pid)]);
  }
}

/** The daemon's live mirrors. */
async function liveMirrors(): Promise<string[]> {
  return ((await dockerInfo('{{json .RegistryConfig.Mirrors}}')) as string[] | null) ?? [];
}

/** A field of `docker info`, parsed; a CLI that hangs is cut off, so every wait around it stays bounded. */
async function dockerInfo(format: string, timeoutMs = 5_000): Promise<unknown> {
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile('docker', ['info', '--format', format], { timeout: timeoutMs, killSignal: 'SIGKILL' }, (error, out, err) =>
      error ? reject(new Error(`docker info failed: ${String(err).trim() || error.message}`)) : resolve(out),
    ),
  );
  return JSON.parse(stdout.trim() || 'null');
}

async function waitForMirrors(what: string, ok: (live: string[]) => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (ok(await liveMirrors())) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? ` (${(last as Error).message})` : ''}; see the daemon's log`);
}

// The daemon's config usually belongs to root; the runner user has passwordless sudo on hosted runners.
async function writeAsRoot(path: string, content: string | Buffer): Promise<void> {
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, content);
  } catch (e) {
    if (!isPermissionError(e)) throw e;
    await sudo(['mkdir', '-p', dirname(path)]);
    await sudo(['tee', path], Buffer.from(content));
  }
}

async function removeAsRoot(path: string): Promise<void> {
  try {
    await rm(path, { force: true });
  } catch (e) {
    if (!isPermissionError(e)) throw e;
    await sudo(['rm', '-f', path]);
  }
}

function isPermissionError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EACCES' || code === 'EPERM';
}

async function sudo(args: string[], input?: Buffer): Promise<void> {
  const out = await exec.getExecOutput('sudo', ['-n', ...args], { silent: true, ignoreReturnCode: true, input });
  if (out.exitCode !== 0) throw new Error(`sudo ${args[0]} failed: ${out.stderr.trim()}`);
  core.debug(`sudo ${args.join(' ')}`);
}
