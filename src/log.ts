// The action's warnings in the job log. Each names the action: an annotation on the job's summary page shows no
// step, and the user has to know which action it came from.
import * as core from '@actions/core';
import { failOnErrorInput } from './context.js';

/** A warning annotation: `pull-cache-action: MESSAGE`. */
export function warn(message: string): void {
  core.warning(`pull-cache-action: ${message}`);
}

/** What went wrong fails the step when fail-on-error is set, and is a warning otherwise: the job goes on. */
export function failOrWarn(message: string): void {
  if (failOnErrorInput()) core.setFailed(`pull-cache-action: ${message}`);
  else warn(message);
}
