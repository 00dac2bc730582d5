// A gate in front of a Docker daemon's API socket: everything passes, but image pulls (POST /images/create), or
// whatever other first request of a connection the test names, wait until the test opens the gate. A client pulling
// (the prefetch worker) is then still there to look at; a daemon that stops answering can be stood in for.
import { createConnection, createServer, type Socket } from 'node:net';

export interface EngineGate {
  /** unix://SOCKET, for DOCKER_HOST. */
  host: string;
  /** Pulls started and waiting at the gate. */
  held(): number;
  /** Lets the waiting pulls, and every later one, through. */
  open(): void;
  stop(): Promise<void>;
}

const PULL = /^POST \S*\/images\/create\?/;

/** Holds a connection whose first request (its request line) this accepts; by default, image pulls. */
export type Holds = (requestLine: string) => boolean;

export async function startEngineGate(daemonSocket: string, socket: string, holds: Holds = (line) => PULL.test(line)): Promise<EngineGate> {
  let opened = false;
  const waiting: (() => void)[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const daemon = createConnection(daemonSocket);
    for (const s of [client, daemon]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => (client.destroy(), daemon.destroy()));
    }
    daemon.pipe(client);
    // A connection's first request decides: the worker opens one per pull.
    client.once('data', (first: Buffer) => {
      client.pause(); // what follows waits in the stream until pipe() resumes it
      const pass = () => {
        daemon.write(first);
        client.pipe(daemon);
      };
      if (opened || !holds(first.toString('latin1'))) pass();
      else waiting.push(pass);
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socket, resolve));
  return {
    host: `unix://${socket}`,
    held: () => waiting.length,
    open() {
      opened = true;
      for (const pass of waiting.splice(0)) pass();
    },
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
