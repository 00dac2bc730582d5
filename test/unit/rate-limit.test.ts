import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, test } from 'node:test';
import { withDeadline } from '../../src/bounded.js';
import {
  FAILURE_ATTEMPTS,
  fetchRetrying,
  HeldBack,
  honourWaits,
  LIMITED_ATTEMPTS,
  parseRetryAfter,
  RateLimited,
  retryWait,
} from '../../src/rate-limit.js';

describe('retryWait', () => {
  test('never sooner than Retry-After: the backoff and its jitter come on top', () => {
    for (const attempt of [1, 2, 3, 5, 7])
      for (const jitter of [0, 0.3, 1])
        for (const told of [0, 2_000, 18_000, 60_000]) {
          const wait = retryWait(attempt, true, told, Infinity, jitter)!;
          assert.ok(wait >= told, `attempt ${attempt}, jitter ${jitter}, told ${told}: waits ${wait}`);
        }
    assert.equal(retryWait(1, true, 2_000, Infinity, 0), 2_250);
    assert.equal(retryWait(1, true, 2_000, Infinity, 1), 2_500);
  });

  test('the backoff doubles, with a random half, up to 30 s', () => {
    const waits = [1, 2, 3, 4, 5, 6, 7].map((a) => retryWait(a, true, undefined, Infinity, 1));
    assert.deepEqual(waits, [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000]);
    assert.deepEqual(
      [1, 2, 3].map((a) => retryWait(a, true, undefined, Infinity, 0)),
      [250, 500, 1_000],
    );
  });

  test('gives up when the wait does not fit in the time left, rather than wait for a deadline it cannot meet', () => {
    assert.equal(retryWait(1, true, 60_000, 10_000, 0), undefined);
    assert.equal(retryWait(1, true, 2_000, 2_249, 0), undefined);
    assert.equal(retryWait(1, true, 2_000, 2_250, 0), 2_250);
    assert.equal(retryWait(1, false, undefined, 0, 0), undefined);
  });

  test('gives up after a bounded number of attempts: fewer for failures than for rate limits', () => {
    assert.equal(retryWait(FAILURE_ATTEMPTS - 1, false, undefined, Infinity, 0), 500);
    assert.equal(retryWait(FAILURE_ATTEMPTS, false, undefined, Infinity, 0), undefined);
    assert.notEqual(retryWait(FAILURE_ATTEMPTS, true, undefined, Infinity, 0), undefined);
    // A 503 that says Retry-After is a rate limit too.
    assert.notEqual(retryWait(FAILURE_ATTEMPTS, false, 1_000, Infinity, 0), undefined);
    assert.equal(retryWait(LIMITED_ATTEMPTS, true, 1_000, Infinity, 0), undefined);
  });

  test('a jitter out of range is clamped', () => {
    assert.equal(retryWait(1, true, 0, Infinity, -5), 250);
    assert.equal(retryWait(1, true, 0, Infinity, 7), 500);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-02-01T10:00:00Z');
  test('seconds, or an HTTP date', () => {
    assert.equal(parseRetryAfter('18', now), 18_000);
    assert.equal(parseRetryAfter(' 2 ', now), 2_000);
    assert.equal(parseRetryAfter('0.5', now), 500);
    assert.equal(parseRetryAfter('Sun, 01 Feb 2026 10:00:19 GMT', now), 19_000);
    assert.equal(parseRetryAfter('Sun, 01 Feb 2026 09:59:00 GMT', now), 0, 'a date past is no wait');
  });
  test('absent or unreadable: undefined', () => {
    for (const value of [null, undefined, '', 'soon', '-3', '1e9x']) assert.equal(parseRetryAfter(value, now), undefined, String(value));
  });
});

describe('HeldBack', () => {
  test('waits that overlap count once; an entry hold adds to its operation', () => {
    const operation = new HeldBack();
    const a = new HeldBack(operation);
    const b = new HeldBack(operation);
    a.add('look-ups', 0, 2_000, true);
    b.add('look-ups', 500, 2_500, true);
    b.add('downloads', 3_000, 4_000, false);
    assert.deepEqual(operation.summary(), { ms: 3_500, refused: 2, kinds: ['look-ups', 'downloads'] });
    assert.deepEqual(a.summary(), { ms: 2_000, refused: 1, kinds: ['look-ups'] });
    assert.equal(b.ms, 3_000);
  });
});

describe('fetchRetrying against a server that rate-limits', () => {
  /** Answers 429 with Retry-After `told` (seconds) to the first `refusals` requests, then 200; records when each came. */
  async function limitingServer(refusals: number, told: string) {
    const at: number[] = [];
    const server = createServer((req, res) => {
      at.push(Date.now());
      if (at.length <= refusals) res.writeHead(429, { 'retry-after': told }).end();
      else res.writeHead(200).end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
    return { url, at, close: () => new Promise((resolve) => server.close(resolve)) };
  }

  test('waits as told between attempts, then gets the answer', async () => {
    const server = await limitingServer(2, '1');
    const held = new HeldBack();
    try {
      const res = await withDeadline('test', 30_000, (signal) =>
        fetchRetrying(server.url, () => ({}), { what: 'testing', kind: 'look-ups', signal, held }),
      );
      assert.equal(await res.text(), 'ok');
      assert.equal(server.at.length, 3);
      for (let i = 1; i < server.at.length; i++)
        assert.ok(server.at[i] - server.at[i - 1] >= 1_000, `attempt ${i + 1} came ${server.at[i] - server.at[i - 1]} ms after`);
      assert.equal(held.refused, 2);
      assert.ok(held.ms >= 2_000);
    } finally {
      await server.close();
    }
  });

  test('gives up at once when told to wait longer than the deadline leaves', async () => {
    const server = await limitingServer(100, '60');
    try {
      const started = Date.now();
      await assert.rejects(
        withDeadline('test', 10_000, (signal) => fetchRetrying(server.url, () => ({}), { what: 'testing', kind: 'creates', signal })),
        (e) => e instanceof RateLimited && /rate-limited testing \(1 attempt, told to wait 60 s\)/.test(e.message),
      );
      assert.ok(Date.now() - started < 2_000);
      assert.equal(server.at.length, 1);
    } finally {
      await server.close();
    }
  });

  test('a wait another process was told (main, before the restore worker) holds this one back too', async () => {
    const server = await limitingServer(0, '0');
    try {
      const started = Date.now();
      honourWaits({ [new URL(server.url).host]: started + 1_500 });
      await withDeadline('test', 10_000, (signal) => fetchRetrying(server.url, () => ({}), { what: 'testing', kind: 'look-ups', signal }));
      assert.equal(server.at.length, 1);
      assert.ok(server.at[0] - started >= 1_500, `called ${server.at[0] - started} ms after, told 1500`);
      honourWaits({ [new URL(server.url).host]: Date.now() + 60_000 });
      await assert.rejects(
        withDeadline('test', 5_000, (signal) => fetchRetrying(server.url, () => ({}), { what: 'testing', kind: 'look-ups', signal })),
        (e) => e instanceof RateLimited,
      );
      assert.equal(server.at.length, 1, 'told more than the deadline leaves: no call');
    } finally {
      await server.close();
    }
  });
});
