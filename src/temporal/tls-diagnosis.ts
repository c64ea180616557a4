/**
 * Why a connection to Temporal failed, when TLS is the reason. The SDK's connect reports only
 * "Failed to connect before the deadline", whatever happened; a person needs to know whether the
 * server wanted a certificate, refused the one given, or was not trusted. This opens one plain TLS
 * connection with the same options and reads the handshake's outcome (in TLS 1.3 the server's
 * verdict on the client certificate arrives as an alert just after the handshake).
 */
import { isIP } from 'node:net';
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { tcpAnswers } from '../servers/tcp';
import type { TemporalConnectionOptions } from './connection';

export type TemporalTlsProblem = 'TemporalTlsRefused' | 'TemporalTlsUntrusted';

/** A TLS problem between this client and Temporal, with the fix; the CLI prints it in one line. */
export class TemporalTlsError extends Error {
  override readonly name = 'TemporalTlsError';
  constructor(message: string, readonly type: TemporalTlsProblem, readonly fix: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const CLIENT_FIX = 'set TEMPORAL_TLS_CA (the CA of the server\'s certificate), TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY (this client\'s own certificate, signed by the CA the server trusts: deploy/pki/init-pki.sh DIR NAME makes one)';

/** OpenSSL's alert codes (ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED, ..._UNKNOWN_CA) as words. */
function alertOf(error: NodeJS.ErrnoException): string | undefined {
  const code = error.code ?? '';
  const m = /ALERT_(.+)$/.exec(code);
  return m ? m[1]!.toLowerCase().replace(/_/g, ' ') : undefined;
}

function splitAddress(address: string): { host: string; port: number } {
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(address);
  return m ? { host: m[1]!, port: Number(m[2]) } : { host: address, port: 7233 };
}

interface Outcome {
  /** The handshake completed and the server then said nothing against it. */
  accepted?: boolean;
  error?: NodeJS.ErrnoException;
  /** The handshake completed before the error (a TLS 1.3 verdict on the client certificate). */
  afterHandshake?: boolean;
}

function handshake(socket: TLSSocket, settleMs: number, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let handshook = false;
    const done = (outcome: Outcome): void => {
      clearTimeout(deadline);
      socket.destroy();
      resolve(outcome);
    };
    const deadline = setTimeout(() => done(handshook ? { accepted: true } : {}), timeoutMs);
    socket.once('secureConnect', () => {
      handshook = true;
      // The server's alert, if any, follows within a round trip.
      setTimeout(() => done({ accepted: true }), settleMs);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => done({ error, afterHandshake: handshook }));
    socket.once('close', () => done(handshook ? { error: Object.assign(new Error('the server closed the connection'), { code: 'ECONNRESET' }), afterHandshake: true } : {}));
  });
}

/**
 * The TLS reason the client with `options` cannot talk to Temporal, or undefined when TLS is
 * not the reason (nothing listens, or the handshake succeeds). Never throws.
 */
export async function diagnoseTls(options: TemporalConnectionOptions, timeoutMs = 3_000): Promise<TemporalTlsError | undefined> {
  try {
    const { host, port } = splitAddress(options.address);
    if (!(await tcpAnswers(host, port, timeoutMs))) return undefined;
    const where = `Temporal at ${options.address}`;
    const tls = typeof options.tls === 'object' ? options.tls : undefined;
    const serverName = tls?.serverNameOverride ?? (isIP(host) ? undefined : host);

    if (!options.tls) {
      // A client without TLS: does the server speak TLS? (No verification: only the protocol is asked.)
      const probe = await handshake(tlsConnect({ host, port, servername: serverName, rejectUnauthorized: false, ALPNProtocols: ['h2'] }), 300, timeoutMs);
      if (probe.accepted || (probe.error && alertOf(probe.error))) {
        return new TemporalTlsError(`${where} refused this client's TLS connection: the server speaks only TLS and this client connects without it`, 'TemporalTlsRefused', CLIENT_FIX);
      }
      return undefined;
    }

    const cert = tls?.clientCertPair;
    const outcome = await handshake(tlsConnect({
      host, port, servername: serverName, ALPNProtocols: ['h2'],
      ca: tls?.serverRootCACertificate && Buffer.from(tls.serverRootCACertificate),
      cert: cert && Buffer.from(cert.crt), key: cert && Buffer.from(cert.key),
      // Verify the server's certificate against the name the SDK would use.
      ...(tls?.serverNameOverride ? { checkServerIdentity: (_host: string, peer: PeerCertificate) => checkName(tls.serverNameOverride!, peer) } : {}),
    }), 500, timeoutMs);
    const error = outcome.error;
    if (!error) return undefined;
    const code = error.code ?? '';
    const alert = alertOf(error);
    if (alert || outcome.afterHandshake) {
      const reason = !cert
        ? `the server requires a client certificate and this client has none (TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY)`
        : `the server refused this client's certificate${alert ? ` (${alert})` : ''}: it is not signed by a CA the server trusts, or it expired`;
      return new TemporalTlsError(`${where} refused this client's TLS connection: ${reason}`, 'TemporalTlsRefused', CLIENT_FIX);
    }
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      return new TemporalTlsError(`${where}: its certificate does not name ${serverName ?? host} (${error.message})`, 'TemporalTlsUntrusted',
        'set TEMPORAL_TLS_SERVER_NAME to a name in the server\'s certificate (deploy/pki/init-pki.sh names it "temporal")');
    }
    if (/CERT|SIGNATURE|ISSUER/.test(code)) {
      return new TemporalTlsError(`${where}: this client does not trust the server's certificate (${code})`, 'TemporalTlsUntrusted',
        'set TEMPORAL_TLS_CA to the CA that signed the server\'s certificate (ca.pem of deploy/pki/init-pki.sh)');
    }
    if (/WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|UNKNOWN_PROTOCOL/.test(code)) {
      return new TemporalTlsError(`${where} does not speak TLS, and this client connects with TLS`, 'TemporalTlsUntrusted',
        'unset TEMPORAL_TLS* and TEMPORAL_API_KEY for a server without TLS, or check TEMPORAL_ADDRESS names the TLS port');
    }
    return undefined;
  } catch {
    return undefined;
  }
}

function checkName(name: string, peer: PeerCertificate): Error | undefined {
  const names = (peer.subjectaltname ?? '').split(', ').map((entry) => entry.replace(/^(DNS|IP Address):/, ''));
  if (names.includes(name)) return undefined;
  return Object.assign(new Error(`the certificate names ${names.join(', ') || 'nothing'}, not ${name}`), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
}
