/** Starts recording this process's events (stdout lines, children, HTTP requests) to `file`. */
export function installTrace(file: string): void;
/** Writes a V8 CPU profile of this process into `dir` when it exits. */
export function installProfile(dir: string): void;
