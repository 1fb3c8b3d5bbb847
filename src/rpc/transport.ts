// The byte streams under the peers: plain TCP, or mutual TLS (node:tls) where both sides
// present a certificate their common CA signed, as GlusterFS's transport.socket.ssl-* does.
import * as fs from 'fs';
import * as net from 'net';
import * as tls from 'tls';
import type { Logger } from '../core/log';

/** Where a side's TLS material is (volfile options, for messages). */
export interface TlsFiles {
  readonly ownCert: string;
  readonly privateKey: string;
  readonly caList: string;
}

export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

const MIN_TLS = 'TLSv1.2';

/** Reads a side's certificate, key and CA list; the error names the option and file that failed. */
export function loadTls(files: TlsFiles): TlsMaterial {
  const read = (option: string, file: string) => {
    try {
      return fs.readFileSync(file);
    } catch (e) {
      throw new Error(`cannot read ${option} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const m = {
    cert: read('ssl.own-cert', files.ownCert),
    key: read('ssl.private-key', files.privateKey),
    ca: read('ssl.ca-list', files.caList),
  };
  try {
    tls.createSecureContext(m);
  } catch (e) {
    throw new Error(`the TLS material (${files.ownCert}, ${files.privateKey}, ${files.caList}) does not work: ${(e as Error).message}`);
  }
  return m;
}

/** Connects (over TLS when `tls` is given), at most `timeoutMs`. */
export function dial(o: { host: string; port: number; tls?: TlsMaterial; timeoutMs: number }): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = o.tls
      ? tls.connect({
          host: o.host,
          port: o.port,
          ...o.tls,
          minVersion: MIN_TLS,
          // The server's certificate must chain to our CA; its name is not checked against
          // remote-host (GlusterFS does not either): the CA is the volume's own.
          checkServerIdentity: () => undefined,
        })
      : net.connect({ host: o.host, port: o.port });
    const timer = setTimeout(() => s.destroy(new Error(`no connection within ${o.timeoutMs} ms`)), o.timeoutMs);
    s.once(o.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      s.destroy();
      reject(e);
    });
  });
}

/**
 * Listens on host:port; `onSocket` gets each connection (over TLS: once its handshake
 * verified the client's certificate against the CA list; failed handshakes are logged).
 */
export async function listen(
  o: { host: string; port: number; tls?: TlsMaterial; handshakeTimeoutMs: number; log: Logger },
  onSocket: (s: net.Socket) => void,
): Promise<net.Server> {
  let server: net.Server;
  if (o.tls) {
    const t = tls.createServer({ ...o.tls, minVersion: MIN_TLS, requestCert: true, rejectUnauthorized: true, handshakeTimeout: o.handshakeTimeoutMs }, onSocket);
    t.on('tlsClientError', (e, s) => o.log.warn(`TLS handshake from ${s.remoteAddress}:${s.remotePort} failed: ${e.message}`));
    server = t;
  } else {
    server = net.createServer(onSocket);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(e.code === 'EADDRINUSE' ? `cannot listen on ${o.host}:${o.port}: the port is in use` : `cannot listen on ${o.host}:${o.port}: ${e.message}`)),
    );
    server.listen(o.port, o.host, () => resolve());
  });
  return server;
}

/** The common name (CN) of the certificate the other side of a TLS socket presented. */
export function peerCertName(socket: net.Socket): string | undefined {
  if (!(socket instanceof tls.TLSSocket)) return undefined;
  const cn = socket.getPeerCertificate()?.subject?.CN as string | string[] | undefined;
  return Array.isArray(cn) ? cn[0] : cn;
}
