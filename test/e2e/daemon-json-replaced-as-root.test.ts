// daemon.json replaced in one step, keeping the owner and mode of the file it replaces. Needs root: the file it
// replaces belongs to another user, as /etc/docker/daemon.json does to a runner user.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeAsRoot } from '../../src/daemon.js';

describe('writeAsRoot: replaces a file in one step', () => {
  test('keeps the mode and owner of the file it replaces, leaves no temporary file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'write-as-root-'));
    try {
      const file = join(dir, 'daemon.json');
      await writeFile(file, '{}\n');
      await chmod(file, 0o640);
      await chown(file, 1234, 5678);
      const before = await stat(file);
      await writeAsRoot(file, '{"debug": true}\n');
      const after = await stat(file);
      assert.equal(await readFile(file, 'utf8'), '{"debug": true}\n');
      assert.deepEqual([after.mode & 0o7777, after.uid, after.gid], [0o640, 1234, 5678]);
      assert.notEqual(after.ino, before.ino, 'a new file renamed over the old, not the old one truncated');
      assert.deepEqual(await readdir(dir), ['daemon.json']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a new file is 0644 whatever the umask; a symlink stays a symlink to the file it names', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'write-as-root-'));
    const umask = process.umask(0o077);
    try {
      await writeAsRoot(join(dir, 'sub', 'new.json'), '{}\n');
      assert.equal((await stat(join(dir, 'sub', 'new.json'))).mode & 0o7777, 0o644);
      await writeFile(join(dir, 'real.json'), '{}\n');
      await symlink('real.json', join(dir, 'daemon.json'));
      await writeAsRoot(join(dir, 'daemon.json'), '{"debug": true}\n');
      assert.equal(await readFile(join(dir, 'real.json'), 'utf8'), '{"debug": true}\n');
      assert.deepEqual((await readdir(dir)).sort(), ['daemon.json', 'real.json', 'sub']);
    } finally {
      process.umask(umask);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
