// A mistake in the action's inputs: its message names the input and what is allowed.
export class InputError extends Error {
  override name = 'InputError';
}
