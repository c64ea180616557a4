/**
 * The worker's monitoring endpoints on node:http: GET /health (JSON, 200 for ok and warning, 503
 * for critical) and GET /metrics (Prometheus text format). Each request reads a fresh snapshot
 * (the probes cache what is costly).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/schema';
import { scrubSecrets, type Logger } from '../logging/logger';
import { buildHealth, httpStatusOf } from './health';
import { METRICS_CONTENT_TYPE, renderMetrics, type MonitoringSnapshot } from './metrics';
import type { MonitoringReading } from './probes';

export interface MonitoringServerOptions {
  config: Config;
  /** Address to listen on (config.monitoring.host). */
  host: string;
  /** 0: any free port. */
  port: number;
  read: () => Promise<MonitoringReading>;
  logger: Logger;
  /** The clock (tests fix it). */
  now?: () => Date;
}

export interface MonitoringServer {
  /** http://host:port, with the port actually bound. */
  url: string;
  /** Stops listening and ends open connections; safe to call twice. */
  close(): Promise<void>;
}

export async function startMonitoringServer({ config, host, port, read, logger, now = () => new Date() }: MonitoringServerOptions): Promise<MonitoringServer> {
  const snapshot = async (): Promise<MonitoringSnapshot> => ({ config, now: now(), ...(await read()) });

  const send = (response: ServerResponse, status: number, type: string, body: string, head: boolean) => {
    response.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    response.end(head ? undefined : body);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const path = new URL(request.url ?? '/', 'http://monitoring').pathname;
    if (path !== '/health' && path !== '/metrics') return send(response, 404, 'text/plain; charset=utf-8', 'not found: GET /health or /metrics\n', false);
    const head = request.method === 'HEAD';
    if (request.method !== 'GET' && !head) {
      response.setHeader('allow', 'GET, HEAD');
      return send(response, 405, 'text/plain; charset=utf-8', 'method not allowed: GET or HEAD\n', false);
    }
    try {
      const current = await snapshot();
      const health = buildHealth(current);
      if (path === '/health') return send(response, httpStatusOf(health), 'application/json; charset=utf-8', `${JSON.stringify(health, null, 2)}\n`, head);
      return send(response, 200, METRICS_CONTENT_TYPE, await renderMetrics(current, health), head);
    } catch (error) {
      const message = scrubSecrets(error instanceof Error ? error.message : String(error));
      logger.error({ path, error: message }, `monitoring: ${path} failed: ${message}`);
      if (path === '/health') {
        return send(response, 503, 'application/json; charset=utf-8', `${JSON.stringify({ status: 'critical', deployment: config.deployment, checkedAt: now().toISOString(), error: message })}\n`, head);
      }
      return send(response, 500, 'text/plain; charset=utf-8', `metrics failed: ${message}\n`, head);
    }
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      logger.error({ error: scrubSecrets(String(error)) }, 'monitoring: a response failed');
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });
  // A scraper keeps its connection open between scrapes; close() must not wait for it.
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    // The code (EADDRINUSE: another process holds the port) is kept: the worker tells a taken port from a wrong address.
    const onError = (error: NodeJS.ErrnoException) => reject(Object.assign(new Error(`monitoring: cannot listen on ${host}:${port} (monitoring.host / monitoring.port): ${error.message}`, { cause: error }), { code: error.code }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (error) => logger.error({ error: error.message }, 'monitoring server error'));

  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  let closing: Promise<void> | undefined;
  return {
    url,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
