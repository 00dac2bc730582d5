// The mirrors' front holds each mirror's port while the cache restores, and any process of the runner (any
// container, with listen: docker-bridge) can reach it. A front that dies frees the port for anyone and sends the
// pulls upstream, so what clients can make it hold is bounded. Hostile clients on loopback, while the restore is
// slowed (the cache service stalls entry lookups): more connections than the front takes, each asking for the
// image being restored; one connection pipelining 150,000 such requests; a header trickled a byte at a time; a
// GET with a body. Meanwhile dockerd pulls the same image, and still gets it from the cache.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FRONT_BOUNDS } from '../../src/gate.js';
import { assertLeftAsItWas, workersOf } from '../helpers/assertions.js';
import { makeLayer, pushImage } from '../helpers/images.js';
import { isRunning, waitFor } from '../helpers/process.js';
import { hubMirror } from '../helpers/runner.js';
import { startWorld, upstreamBlobFetches, type World } from '../helpers/world.js';

const MiB = 1024 * 1024;
const DAEMON_JSON = '{}\n';
/** Every entry's lookup, not the index's: the restore takes at least this long. */
const STALL_MS = 25_000;
const ENTRY_LOOKUPS = { methods: ['GetCacheEntryDownloadURL'], keys: /^pull-cache-(?!index-)/, hangMs: STALL_MS };
/** A request the front holds while the restore runs: the manifest of the image being restored. */
const HELD = 'GET /v2/library/alpha/manifests/1 HTTP/1.1\r\nHost: mirror\r\n\r\n';
const FLOOD_REQUESTS = 150_000;
/** Far below the 1.47 GB the flood grew an unbounded front to. */
const MAX_FRONT_KB = 200 * 1024;

/** A kB figure from /proc/PID/status (VmRSS: now, VmHWM: the peak). */
function memoryKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** A raw connection to the front: what it answered, and whether (and when) it closed. */
interface Client {
  socket: Socket;
  received(): string;
  closedAt?: number;
}

async function open(port: number): Promise<Client> {
  const socket = connect(port, '127.0.0.1');
  let text = '';
  const client: Client = { socket, received: () => text };
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => {});
  socket.on('close', () => (client.closedAt = Date.now()));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return client;
}

/** Waits (doing `meanwhile` every 500 ms) until the front closes the connection or `ms` pass; then closes it. */
async function closedWithin(client: Client, ms: number, meanwhile = () => {}): Promise<{ closed: boolean; afterMs: number }> {
  const started = Date.now();
  while (!client.closedAt && Date.now() - started < ms) {
    meanwhile();
    await sleep(500);
  }
  const closed = { closed: client.closedAt !== undefined, afterMs: (client.closedAt ?? Date.now()) - started };
  client.socket.destroy();
  return closed;
}

/** What the clients saw, and the front's memory. */
interface Seen {
  rssBeforeKb?: number;
  connections?: Record<string, number>;
  flood?: { closed: boolean; afterMs: number };
  slowHeader?: { closed: boolean; afterMs: number };
  bodyOnGet?: string;
  rssAfterKb?: number;
  peakKb?: number;
  frontUp?: boolean;
  pulledAt?: number;
  pullFailed?: string;
  pullStillHeld?: boolean;
  peakAfterPullKb?: number;
  frontUpAfterPull?: boolean;
}

const statusOf = (client: Client) => /^HTTP\/1\.1 (\d{3})/.exec(client.received())?.[1] ?? (client.closedAt ? 'closed' : 'none');

describe("the mirrors' front under hostile clients", { timeout: 300_000 }, () => {
  let world: World;

  before(async () => {
    world = await startWorld('front-bounds');
    await pushImage(world.upstream.url, 'library/alpha', '1', [makeLayer('front-alpha', [{ path: 'opt/alpha.bin', bytes: 2 * MiB }])]);
    const runner = await world.runner('fill', DAEMON_JSON);
    const { post } = await runner.job(runner.inputs(), () => runner.pull('alpha:1'));
    assert.match(post.summary, /Saved: \d+ new entr(y|ies)/);
  });
  after(() => world?.stop());

  test('connections, held requests, a pipelined flood, a slow header and a GET with a body are bounded; the front stays up and a pull still comes from the cache', async () => {
    world.cache.setFault(ENTRY_LOOKUPS);
    const runner = await world.runner('hostile', DAEMON_JSON);
    const seen: Seen = {};
    let result!: Awaited<ReturnType<typeof runner.job>>;
    try {
      const fetched = await upstreamBlobFetches(world.upstream, async () => {
        result = await runner.job(runner.inputs({ prefetch: 'false' }), async (main) => {
          const front = workersOf(main)["mirrors' front"];
          const port = hubMirror(main).port;
          assert.ok(isRunning(front), "the mirrors' front runs");
          seen.rssBeforeKb = memoryKb(front, 'VmRSS');

          // More connections than the front takes, each asking for the image being restored.
          const clients: Client[] = [];
          for (let i = 0; i < FRONT_BOUNDS.connections + 16; i++) {
            clients.push(await open(port));
            clients.at(-1)!.socket.write(HELD);
          }
          await sleep(2_000);
          seen.connections = {};
          for (const c of clients) seen.connections[statusOf(c)] = (seen.connections[statusOf(c)] ?? 0) + 1;
          for (const c of clients) c.socket.destroy();
          await waitFor(
            'the front to take a connection again',
            async () => (await fetch(`http://127.0.0.1:${port}/v2/`)).status === 200,
            10_000,
          );

          const pull = runner.pull('alpha:1').then(
            () => (seen.pulledAt = Date.now()),
            (e: Error) => (seen.pullFailed = e.message.split('\n').slice(0, 2).join(' ')),
          );
          await Promise.all([
            (async () => {
              const client = await open(port);
              client.socket.write(HELD.repeat(FLOOD_REQUESTS));
              seen.flood = await closedWithin(client, 15_000);
            })(),
            (async () => {
              const client = await open(port);
              client.socket.write('GET /v2/ HTTP/1.1\r\nHost: mirror\r\nX-Slow: ');
              seen.slowHeader = await closedWithin(client, FRONT_BOUNDS.headMs + 15_000, () => client.socket.write('a'));
            })(),
            (async () => {
              const client = await open(port);
              client.socket.write('GET /v2/ HTTP/1.1\r\nHost: mirror\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
              await sleep(2_000);
              seen.bodyOnGet = statusOf(client);
              client.socket.destroy();
            })(),
          ]);
          seen.rssAfterKb = memoryKb(front, 'VmRSS');
          seen.peakKb = memoryKb(front, 'VmHWM');
          seen.frontUp = isRunning(front);
          seen.pullStillHeld = seen.pulledAt === undefined && seen.pullFailed === undefined;
          await pull;
          seen.frontUpAfterPull = isRunning(front);
          seen.peakAfterPullKb = memoryKb(front, 'VmHWM');
          console.log(`front-bounds: ${JSON.stringify(seen)}`);
          assert.equal(seen.pullFailed, undefined, 'the pull succeeds');

          assert.deepEqual(
            seen.connections,
            { none: FRONT_BOUNDS.held, 503: FRONT_BOUNDS.connections + 16 - FRONT_BOUNDS.held },
            'as many held as the cap; the rest answered 503, past the held cap or past the connection cap',
          );
          assert.ok(seen.flood?.closed, `the pipelining connection is closed by the front: ${JSON.stringify(seen.flood)}`);
          assert.ok(
            seen.slowHeader?.closed && seen.slowHeader.afterMs < FRONT_BOUNDS.headMs + 3_000,
            `the slow header's connection is closed at the head deadline: ${JSON.stringify(seen.slowHeader)}`,
          );
          assert.equal(seen.bodyOnGet, '400', 'a GET with a body is refused');
          assert.ok(
            seen.peakAfterPullKb! < MAX_FRONT_KB,
            `the front's peak resident memory (VmHWM): ${seen.peakKb} kB after the clients, ${seen.peakAfterPullKb} kB after the pull; under ${MAX_FRONT_KB} kB`,
          );
          assert.ok(seen.frontUp && seen.frontUpAfterPull, 'the front stays up');
          assert.ok(seen.pullStillHeld, 'the pull was still held for the restore when the clients were done');
        });
      });
      assert.deepEqual(fetched, [], 'the upstream served no blob: the pull came from the cache');
    } finally {
      world.cache.setFault(null);
    }
    const { main, post } = result;
    assert.match(post.summary, /\| alpha:1 \| \d+ blobs?, [\d.]+ MiB \| – \|/, 'served from the cache');
    await assertLeftAsItWas(runner, DAEMON_JSON, main, post);
  });
});
