// The inputs' defaults are stated twice: in action.yml, which the runner passes, and in DEFAULTS, which
// parseInputs falls back to when an input is empty. These tests tie the two, so a default changed in one place
// and not the other fails here.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { DEFAULTS, parseInputs } from '../../src/context.js';

const action = parse(await readFile(new URL('../../action.yml', import.meta.url), 'utf8')) as {
  inputs: Record<string, { default?: string }>;
};
const declared = Object.keys(action.inputs);
const defaultOf = (input: string) => action.inputs[input].default ?? '';
const inputName = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

describe('input defaults: action.yml and DEFAULTS', () => {
  test('each default in DEFAULTS is the default action.yml gives its input', () => {
    for (const [key, value] of Object.entries(DEFAULTS)) {
      const input = inputName(key);
      assert.ok(declared.includes(input), `DEFAULTS.${key}: action.yml declares no input ${input}`);
      assert.equal(defaultOf(input), value, `the default of ${input}`);
    }
  });

  test("action.yml's defaults, passed as the runner passes them, read as no inputs at all", () => {
    assert.deepEqual(
      parseInputs((name) => defaultOf(name)),
      parseInputs(() => ''),
    );
  });

  test('parseInputs reads exactly the inputs action.yml declares', () => {
    const read = new Set<string>();
    parseInputs((name) => {
      read.add(name);
      return '';
    });
    assert.deepEqual([...read].sort(), [...declared].sort());
  });
});
