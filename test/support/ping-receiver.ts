/** A stand-in for Healthchecks.io: an HTTP server on loopback that records every ping it gets. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Ping {
  /** The path after the check's base: '' for success, '/fail', '/start'. */
  signal: string;
  method: string;
  /** Milliseconds since the epoch, when the body had arrived. */
  at: number;
  body: string;
}

export interface PingReceiver {
  /** The check's ping URL (what the config's variable holds). */
  url: string;
  pings: Ping[];
  close(): Promise<void>;
}

export async function startPingReceiver(check = 'check'): Promise<PingReceiver> {
  const pings: Ping[] = [];
  const base = `/ping/${check}`;
  const server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      const path = request.url ?? '';
      pings.push({ signal: path.startsWith(base) ? path.slice(base.length) : path, method: request.method ?? '', at: Date.now(), body });
      response.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${base}`,
    pings,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
