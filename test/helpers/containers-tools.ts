// Debian's Skopeo (1.9) and Podman (4.3) as a job's steps run them, with a home of their own: they read the
// machine's /etc/containers and the user's ~/.config/containers/registries.conf.d, where the test has the action
// put its drop-in (as it would for a runner user), so nothing under /etc is written. Podman keeps its images in a
// root, run root and tmp dir of its own with the vfs driver, and each tool sees a /var/lib of its own, so the
// machine's containers storage is untouched.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { run, type Wrap } from './process.js';

export interface ContainersTools {
  /** The HOME the tools run with. */
  home: string;
  /** Where the user's registries.conf drop-ins go (not made: the action makes it). */
  registriesConfDir: string;
  /** `skopeo copy docker://REF dir:...`: every blob of the image; throws with skopeo's words when it fails. */
  skopeoCopy(ref: string): Promise<void>;
  /** `podman pull REF` into this instance's storage; throws with podman's words when it fails. */
  podmanPull(ref: string): Promise<void>;
  /** Removes Podman's run root (outside dir: podman wants it short). */
  remove(): Promise<void>;
}

export async function containersTools(dir: string, opts: { wrap?: Wrap } = {}): Promise<ContainersTools> {
  const home = join(dir, 'home');
  await mkdir(home, { recursive: true });
  const env = { ...process.env, HOME: home, XDG_CONFIG_HOME: '', CONTAINERS_REGISTRIES_CONF: '' };
  const exec = async (command: string, args: string[]) => {
    // As root, Skopeo keeps its blob-info cache in /var/lib/containers/cache whatever its flags say: a tmpfs over
    // /var/lib in a mount namespace of its own keeps that off the machine.
    const own = {
      command: 'unshare',
      args: [
        '--mount',
        '--propagation',
        'private',
        '--',
        '/bin/sh',
        '-c',
        'mount -t tmpfs tmpfs /var/lib && exec "$0" "$@"',
        command,
        ...args,
      ],
    };
    const { command: c, args: a } = opts.wrap ? opts.wrap(own.command, own.args) : own;
    const r = await run(c, a, { env, timeoutMs: 180_000 });
    if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  };
  const podman = join(dir, 'podman');
  const runRoot = await mkdtemp('/tmp/pdr-'); // podman refuses a run root of more than 50 characters
  return {
    home,
    registriesConfDir: join(home, '.config', 'containers', 'registries.conf.d'),
    skopeoCopy: async (ref) =>
      exec('skopeo', ['--insecure-policy', 'copy', `docker://${ref}`, `dir:${await mkdtemp(join(dir, 'skopeo-'))}`]),
    podmanPull: (ref) =>
      exec('podman', [
        '--root',
        join(podman, 'root'),
        '--runroot',
        runRoot,
        '--tmpdir',
        join(podman, 'tmp'),
        '--storage-driver',
        'vfs',
        '--events-backend',
        'none',
        '--cgroup-manager',
        'cgroupfs',
        'pull',
        '--quiet',
        ref,
      ]),
    remove: () => rm(runRoot, { recursive: true, force: true }),
  };
}
