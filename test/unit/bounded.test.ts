// Work bounded in time: an operation past its deadline is cut off, its signal aborted, and says what and how long.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { withDeadline } from '../../src/bounded.js';

describe('withDeadline', () => {
  test("the operation's result when it finishes in time", async () => {
    assert.equal(await withDeadline('the restore', 5_000, async () => 'restored'), 'restored');
  });

  test("past the deadline: an error naming what and the limit, and the operation's signal aborted with it", async () => {
    let seen: AbortSignal | undefined;
    const outcome = withDeadline('the save', 50, (signal) => {
      seen = signal;
      return new Promise<never>(() => {});
    });
    await assert.rejects(outcome, { message: 'the save took longer than 0.05 s (cache-timeout)' });
    assert.equal(seen?.aborted, true);
    assert.equal((seen?.reason as Error).message, 'the save took longer than 0.05 s (cache-timeout)');
  });

  test("the operation's own failure comes through as it is", async () => {
    await assert.rejects(
      withDeadline('the restore', 5_000, async () => Promise.reject(new Error('cache service down'))),
      { message: 'cache service down' },
    );
  });
});
